/**
 * The layers of `lib/` import one way only: each file imports from its own
 * layer or from layers below it, never from above. The order is the one the
 * README's Architecture section draws.
 */
import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");

/** Bottom first. A layer is a folder under `lib/` or a file directly in it. */
const LAYERS: readonly (readonly string[])[] = [
  ["errors.ts"],
  ["platform"],
  ["crypto"],
  ["record"],
  ["dht"],
  ["messaging"],
  ["group"],
  ["store"],
  ["profile"],
  ["messenger"],
  ["storage_node.ts"],
  ["daemon"],
  ["cli"],
];

function layerOf(path: string): number {
  const rel = relative(join(ROOT, "lib"), path);
  const top = rel.split("/")[0]!;
  const index = LAYERS.findIndex((layer) => layer.includes(top));
  if (index < 0) throw new Error(`lib/${rel} belongs to no layer: add it to LAYERS`);
  return index;
}

async function* libFiles(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) yield* libFiles(path);
    else if (entry.name.endsWith(".ts")) yield path;
  }
}

/** Relative imports of a module, doc examples excluded. */
function importsOf(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "");
  const found: string[] = [];
  const pattern = /(?:^|\n)\s*(?:import|export)[^;]*?from\s+"(\.{1,2}\/[^"]+)"/g;
  for (const match of code.matchAll(pattern)) found.push(match[1]!);
  for (const match of code.matchAll(/import\(\s*"(\.{1,2}\/[^"]+)"\s*\)/g)) found.push(match[1]!);
  return found;
}

async function edges(): Promise<{ from: string; to: string }[]> {
  const out: { from: string; to: string }[] = [];
  for await (const file of libFiles(join(ROOT, "lib"))) {
    for (const spec of importsOf(await Deno.readTextFile(file))) {
      out.push({ from: file, to: resolve(dirname(file), spec) });
    }
  }
  return out;
}

Deno.test("every file under lib/ belongs to a layer", async () => {
  for await (const file of libFiles(join(ROOT, "lib"))) layerOf(file);
});

Deno.test("lib/ imports only from its own layer or below", async () => {
  const upward = (await edges())
    .filter(({ to }) => to.startsWith(join(ROOT, "lib") + "/"))
    .filter(({ from, to }) => layerOf(to) > layerOf(from))
    .map(({ from, to }) => `${relative(ROOT, from)} -> ${relative(ROOT, to)}`);
  assert.deepEqual(upward, []);
});

Deno.test("lib/ never imports the entry points, tests or benches", async () => {
  const outside = (await edges())
    .filter(({ to }) => !to.startsWith(join(ROOT, "lib") + "/"))
    // The version the CLI prints.
    .filter(({ to }) => to !== join(ROOT, "deno.json"))
    .map(({ from, to }) => `${relative(ROOT, from)} -> ${relative(ROOT, to)}`);
  assert.deepEqual(outside, []);
});

Deno.test("the import check sees imports and skips doc examples", () => {
  const source = [
    "/**",
    ' * import { x } from "../cli/main.ts";',
    " */",
    'import { a } from "./a.ts";',
    'export { b } from "../b.ts";',
    "import type {",
    "  C,",
    '} from "../c/c.ts";',
    'const d = await import("./d.ts");',
  ].join("\n");
  assert.deepEqual(importsOf(source), ["./a.ts", "../b.ts", "../c/c.ts", "./d.ts"]);
});
