/**
 * A linear scan of JSON text that refuses hostile shapes before JSON.parse and schema validation see them:
 * nesting deeper than `maxDepth` (recursive code downstream, and V8's JSON.parse took 11 s on 8 MB of '[')
 * and more than `maxValues` values (JSON.parse took 2.9 s on 7.8 MB of `{},`; every schema check after it
 * walks them all). Strings are skipped with indexOf, so long texts cost little. Malformed JSON is left for
 * JSON.parse to describe.
 */
export interface JsonShapeLimits {
  maxDepth: number;
  maxValues: number;
}

export type JsonShapeProblem = { kind: 'depth'; limit: number } | { kind: 'values'; limit: number };

const QUOTE = 34;
const BACKSLASH = 92;
const COMMA = 44;
const OPEN_ARRAY = 91;
const OPEN_OBJECT = 123;
const CLOSE_ARRAY = 93;
const CLOSE_OBJECT = 125;

/** The first limit `text` breaks, or null. */
export function jsonShapeProblem(text: string, { maxDepth, maxValues }: JsonShapeLimits): JsonShapeProblem | null {
  let depth = 0;
  let values = 1; // the top-level value; each comma and each container adds one
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // to the closing quote: one not preceded by an odd run of backslashes
      let j = i;
      for (;;) {
        j = text.indexOf('"', j + 1);
        if (j < 0) return null; // unterminated: JSON.parse says so
        let k = j - 1;
        while (text.charCodeAt(k) === BACKSLASH) k--;
        if ((j - 1 - k) % 2 === 0) break;
      }
      i = j;
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > maxDepth) return { kind: 'depth', limit: maxDepth };
      if (++values > maxValues) return { kind: 'values', limit: maxValues };
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) depth--;
    else if (c === COMMA && ++values > maxValues) return { kind: 'values', limit: maxValues };
  }
  return null;
}
