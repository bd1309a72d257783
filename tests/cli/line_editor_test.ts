/** The chat's input line: key decoding and editing, byte by byte. */
import assert from "node:assert/strict";
import { LineEditor } from "../../lib/cli/line_editor.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("LineEditor edits the line as a terminal user expects", async (t) => {
  const cases: [string, string, string, number][] = [
    ["typing", "hello", "hello", 5],
    ["backspace removes one character, also a multibyte one", "naïve€\x7f\x7f", "naïv", 4],
    ["Ctrl-H is a backspace too", "ab\x08", "a", 1],
    ["left and right arrows move the cursor", "ac\x1b[Db\x1b[C!", "abc!", 4],
    ["Home and End, in both encodings", "bc\x1b[Ha\x1b[F!\x1bOHx\x1b[4~y", "xabc!y", 6],
    ["Ctrl-A and Ctrl-E", "bc\x01a\x05d", "abcd", 4],
    ["Delete removes under the cursor", "abc\x1b[D\x1b[D\x1b[3~", "ac", 1],
    ["Ctrl-U clears before the cursor", "abc def\x1b[D\x1b[D\x15", "ef", 0],
    ["Ctrl-K clears after the cursor", "abc def\x01\x1b[C\x0b", "a", 1],
    ["Ctrl-W removes the word before the cursor", "one two  \x17", "one ", 4],
    ["Ctrl-D on a non-empty line deletes forward", "ab\x01\x04", "b", 0],
    ["unknown escape sequences and control keys are ignored", "a\x1b[1;5Ab\x07\x1b[99~c", "abc", 3],
    ["a tab becomes a space", "a\tb", "a b", 3],
    [
      "a bracketed paste keeps its newlines from sending",
      "\x1b[200~one\rtwo\x1b[201~",
      "one two",
      7,
    ],
  ];
  for (const [name, keys, text, cursor] of cases) {
    await t.step(name, () => {
      const editor = new LineEditor();
      assert.deepEqual(editor.feed(bytes(keys)), []);
      assert.equal(editor.text, text);
      assert.equal(editor.cursor, cursor);
    });
  }
});

Deno.test("LineEditor submits on Enter and quits on Ctrl-C, or Ctrl-D on an empty line", () => {
  const editor = new LineEditor();
  assert.deepEqual(editor.feed(bytes("one\rtwo\n\r")), [
    { type: "line", text: "one" },
    { type: "line", text: "two" },
    { type: "line", text: "" },
  ]);
  assert.deepEqual(editor.feed(bytes("\x04")), [{ type: "quit", key: "ctrl-d" }]);
  assert.deepEqual(editor.feed(bytes("typed\x03")), [{ type: "quit", key: "ctrl-c" }]);
});

Deno.test("LineEditor joins UTF-8 characters and escape sequences split across reads", () => {
  const editor = new LineEditor();
  const euro = bytes("€");
  editor.feed(euro.subarray(0, 1));
  editor.feed(euro.subarray(1));
  editor.feed(bytes("x\x1b"));
  editor.feed(bytes("["));
  editor.feed(bytes("D"));
  editor.feed(bytes("y"));
  assert.equal(editor.text, "€yx");
});

Deno.test("LineEditor.render scrolls a long line so the cursor stays visible", () => {
  const editor = new LineEditor("> ");
  assert.equal(editor.render(20), "\r\x1b[2K> \r\x1b[2C");
  editor.feed(bytes("0123456789abcdefghij"));
  // 20 columns: 2 for the prompt, 17 for the text and the cursor, 1 left free.
  assert.equal(editor.render(20), "\r\x1b[2K> 456789abcdefghij\r\x1b[18C");
  editor.feed(bytes("\x01"));
  assert.equal(editor.render(20), "\r\x1b[2K> 0123456789abcdefg\r\x1b[2C");
});
