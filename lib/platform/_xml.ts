/**
 * A small strict XML reader for the few documents DIM's UPnP client reads
 * (a router's device description, SOAP answers): elements, text, CDATA,
 * comments and processing instructions. No DOCTYPE (so no entities of a
 * document's own, no entity expansion), attributes checked for form and
 * dropped, namespace prefixes dropped from names, depth and element count
 * bounded. Anything else is a `SyntaxError`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { childText, parseXml } from "./_xml.ts";
 *
 * const root = parseXml('<s:Envelope><s:Body><a>1 &amp; 2</a></s:Body></s:Envelope>');
 * assert.equal(root.name, "Envelope");
 * assert.equal(childText(root.children[0]!, "a"), "1 & 2");
 * assert.throws(() => parseXml("<!DOCTYPE x><x/>"), SyntaxError);
 * ```
 *
 * @module
 */

/** Device descriptions nest about 6 deep; SOAP answers 4. */
export const MAX_XML_DEPTH = 32;
/** Device descriptions hold about 100 elements. */
export const MAX_XML_ELEMENTS = 4_096;

/** An element: its local name (prefix dropped), children, and direct text. */
export interface XmlElement {
  /** The name without its namespace prefix. */
  readonly name: string;
  /** The name as written, prefix included. */
  readonly qname: string;
  /** The child elements, in order. */
  readonly children: XmlElement[];
  /** The element's own text (CDATA included, entities decoded), not its children's. */
  text: string;
}

const NAME = "[A-Za-z_][\\w.-]*(?::[A-Za-z_][\\w.-]*)?";
const OPEN_TAG = new RegExp(
  `<(${NAME})((?:\\s+${NAME}\\s*=\\s*(?:"[^"<]*"|'[^'<]*'))*)\\s*(/?)>`,
  "y",
);
const CLOSE_TAG = new RegExp(`</(${NAME})\\s*>`, "y");
const ENTITY = /&(?:#x([0-9a-fA-F]{1,6})|#([0-9]{1,7})|(lt|gt|amp|quot|apos));/g;
const NAMED: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };

/**
 * Parses a document: exactly one root, at most {@linkcode MAX_XML_DEPTH}
 * deep and {@linkcode MAX_XML_ELEMENTS} elements.
 *
 * @param source The text.
 * @returns The root element.
 * @throws {SyntaxError} For anything that is not such a document.
 */
export function parseXml(source: string): XmlElement {
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  let count = 0;
  let i = source.charCodeAt(0) === 0xfeff ? 1 : 0;
  const fail = (why: string) => new SyntaxError(`Cannot parse XML: ${why} at offset ${i}`);
  const skipPast = (end: string, from: number) => {
    const at = source.indexOf(end, from);
    if (at === -1) throw fail(`an unterminated ${end}`);
    return at + end.length;
  };
  while (i < source.length) {
    const top = stack[stack.length - 1];
    const lt = source.indexOf("<", i);
    const end = lt === -1 ? source.length : lt;
    if (end > i) {
      const raw = source.slice(i, end);
      if (top !== undefined) top.text += decodeText(raw, fail);
      else if (raw.trim() !== "") throw fail("text outside the root element");
      i = end;
    } else if (source.startsWith("<!--", i)) {
      i = skipPast("-->", i + 4);
    } else if (source.startsWith("<![CDATA[", i)) {
      if (top === undefined) throw fail("CDATA outside the root element");
      const close = skipPast("]]>", i + 9);
      top.text += source.slice(i + 9, close - 3);
      i = close;
    } else if (source.startsWith("<?", i)) {
      i = skipPast("?>", i + 2);
    } else if (source.startsWith("<!", i)) {
      throw fail("a document type declaration");
    } else if (source.startsWith("</", i)) {
      CLOSE_TAG.lastIndex = i;
      const match = CLOSE_TAG.exec(source);
      if (match === null || top === undefined || match[1] !== top.qname) {
        throw fail("a mismatched end tag");
      }
      stack.pop();
      i = CLOSE_TAG.lastIndex;
    } else {
      OPEN_TAG.lastIndex = i;
      const match = OPEN_TAG.exec(source);
      if (match === null) throw fail("a malformed tag");
      if (top === undefined && root !== undefined) throw fail("a second root element");
      if (++count > MAX_XML_ELEMENTS) throw fail("too many elements");
      if (stack.length >= MAX_XML_DEPTH) throw fail("nesting too deep");
      const qname = match[1]!;
      const el: XmlElement = {
        name: qname.slice(qname.indexOf(":") + 1),
        qname,
        children: [],
        text: "",
      };
      if (top === undefined) root = el;
      else top.children.push(el);
      if (match[3] !== "/") stack.push(el);
      i = OPEN_TAG.lastIndex;
    }
  }
  if (stack.length > 0) throw fail("an unclosed element");
  if (root === undefined) throw fail("no root element");
  return root;
}

/** Replaces the five named entities and character references; any other `&` is an error. */
function decodeText(raw: string, fail: (why: string) => Error): string {
  if (raw.replace(ENTITY, "").includes("&")) throw fail("an unknown entity");
  return raw.replace(ENTITY, (_, hex?: string, dec?: string, name?: string) => {
    if (name !== undefined) return NAMED[name]!;
    const code = hex !== undefined ? parseInt(hex, 16) : Number(dec);
    if (code === 0 || code > 0x10ffff) throw fail("a bad character reference");
    return String.fromCodePoint(code);
  });
}

/** Every element named `name` (local name) under and including `root`, in document order. */
export function descendants(root: XmlElement, name: string): XmlElement[] {
  const found: XmlElement[] = [];
  const walk = (el: XmlElement) => {
    if (el.name === name) found.push(el);
    for (const child of el.children) walk(child);
  };
  walk(root);
  return found;
}

/** The trimmed text of the first child named `name`. */
export function childText(el: XmlElement, name: string): string | undefined {
  return el.children.find((child) => child.name === name)?.text.trim();
}

/** Escapes text for an element's content or an attribute value. */
export function escapeXml(value: string): string {
  return value.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
