/** The chat's `/file` path: reading it, and completing it with Tab in the line editor. */
import assert from "node:assert/strict";
import { LineEditor } from "../../lib/cli/line_editor.ts";
import { completeFileArg, readFileArg } from "../../lib/cli/path_complete.ts";

const entries: Record<string, { name: string; isDirectory: boolean }[]> = {
  ".": [
    { name: "my photo.jpg", isDirectory: false },
    { name: "my plan.txt", isDirectory: false },
    { name: "it's here", isDirectory: true },
    { name: ".hidden", isDirectory: false },
  ],
  "it's here/": [{ name: "a b", isDirectory: false }],
  "/home/ada/": [{ name: "notes 1.md", isDirectory: false }],
};
const lookup = { list: (dir: string) => entries[dir], home: "/home/ada" };
const keys = (text: string) => new TextEncoder().encode(text);

Deno.test("a /file path is read as typed, quoted or escaped", () => {
  for (const arg of ["my photo.jpg", "my\\ photo.jpg", '"my photo.jpg"', "'my photo.jpg'  "]) {
    assert.equal(readFileArg(arg, "/home/ada"), "my photo.jpg");
  }
  assert.equal(readFileArg("it\\'s\\ here/a\\ b", undefined), "it's here/a b");
  assert.equal(readFileArg("~/notes 1.md", "/home/ada"), "/home/ada/notes 1.md");
});

Deno.test("Tab completes /file paths with spaces, escaped or in the quote opened", () => {
  const editor = new LineEditor("> ", { complete: (b) => completeFileArg(b, lookup) });
  // Two matches: the first Tab writes the common part escaped, the next lists them.
  assert.deepEqual(editor.feed(keys("/file my p\t")), []);
  assert.equal(editor.text, "/file my\\ p");
  assert.deepEqual(editor.feed(keys("\t")), [{
    type: "options",
    options: ["my photo.jpg", "my plan.txt"],
  }]);
  assert.equal(editor.text, "/file my\\ p");
  editor.feed(keys("h\t"));
  assert.equal(editor.text, "/file my\\ photo.jpg");
  assert.deepEqual(editor.feed(keys("\r")), [{ type: "line", text: "/file my\\ photo.jpg" }]);

  editor.feed(keys("/file it\t"));
  assert.equal(editor.text, "/file it\\'s\\ here/");
  editor.feed(keys("\t"));
  assert.equal(editor.text, "/file it\\'s\\ here/a\\ b");
  editor.feed(keys("\x15"));

  editor.feed(keys('/file "my ph\t'));
  assert.equal(editor.text, '/file "my photo.jpg"');
  editor.feed(keys("\x15/file ~/no\t"));
  assert.equal(editor.text, "/file ~/notes\\ 1.md");
  const typed: string = editor.text;
  assert.equal(readFileArg(typed.slice(6), "/home/ada"), "/home/ada/notes 1.md");

  // Not a /file line, or no match: Tab is a space, as before.
  editor.feed(keys("\x15hi\t"));
  assert.equal(editor.text, "hi ");
  editor.feed(keys("\x15/file zz\t"));
  assert.equal(editor.text, "/file zz ");
});
