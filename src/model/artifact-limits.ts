/**
 * Budgets for reading artifacts from disk (checkpoints, SAEs, bundle JSON), in one place. Every parser checks
 * declared sizes against these before it allocates or inflates anything, so a hostile file is refused for the
 * cost of its header; and every error message built from a file is bounded (see `clip`) and carries no bytes
 * of the file beyond short, quoted names.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { formatError } from '../errors.js';

export const ARTIFACT_LIMITS = {
  /** JSON files read whole: config.json, cfg.json, the checkpoint index, manifest.json, rule.json */
  smallJsonBytes: 16 << 20,
  /** head.json (dense float32 weights and idf for up to a few million SAE features, base64) */
  headJsonBytes: 256 << 20,
  /** tokenizer.json (Qwen3's is 11 MB) */
  tokenizerJsonBytes: 128 << 20,
  /** a safetensors JSON header (the reference implementation's limit) */
  safetensorsHeaderBytes: 100_000_000,
  /** a torch.save pickle (data.pkl) once inflated: a state dict of tensors needs kilobytes */
  pickleBytes: 64 << 20,
  /** any other small zip entry read whole (byteorder, version) */
  smallZipEntryBytes: 1 << 10,
  /** a zip central directory */
  zipDirectoryBytes: 64 << 20,
  /** elementary steps one unpickling may take: opcodes plus every value copied or visited */
  pickleWork: 20_000_000,
  /** nested containers walked below the root of a pickle */
  pickleDepth: 64,
  /** tensors one artifact may name (a whole 235B-parameter MoE state dict has about 40,000) */
  tensors: 200_000,
  /** characters of one tensor name */
  nameChars: 1024,
  /** dimensions of one tensor */
  rank: 8,
  /** elements of one tensor (2^32: a 16 GiB float32 array, past any SAE or embedding matrix served here) */
  tensorElements: 2 ** 32,
  /** nesting of JSON arrays and objects (V8 parses 10 MB of '[' in about 9 s; real artifacts nest under 10 deep) */
  jsonDepth: 64,
  /** characters of a message built from file contents */
  messageChars: 300,
} as const;

/** a * b * ... for dimensions, refused (null) once past `limit` instead of rounding past 2^53 */
export function checkedProduct(dims: readonly number[], limit: number = ARTIFACT_LIMITS.tensorElements): number | null {
  let n = 1;
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) return null;
    if (d === 0) return 0;
  }
  for (const d of dims) {
    n *= d;
    if (n > limit) return null;
  }
  return n;
}

/** A short, printable rendering of text that came from a file: control characters escaped, length bounded. */
export function clip(text: string, max = 60): string {
  const printable = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return printable.length > max ? `${printable.slice(0, max)}...(${text.length} chars)` : printable;
}

/**
 * A whole file, at most `maxBytes`: refused before reading when it is not a regular file (a FIFO, /dev/zero
 * behind a symlink) or is larger. Reads through one descriptor, so the size checked is the size read.
 */
export function readBoundedFile(path: string, maxBytes: number, what: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw formatError(`${path}: cannot read the ${what} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw formatError(`${path}: the ${what} is not a regular file`);
    if (st.size > maxBytes) throw formatError(`${path}: the ${what} is ${st.size} bytes, more than the ${maxBytes}-byte limit`);
    const buf = Buffer.alloc(st.size);
    let done = 0;
    while (done < st.size) {
      const n = readSync(fd, buf, done, st.size - done, done);
      if (n === 0) break;
      done += n;
    }
    return done === st.size ? buf : buf.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

/**
 * JSON.parse whose error says where parsing stopped but never quotes the text: V8's messages carry a slice of
 * the input ("Unexpected token 'r', \"root:x:0:0\"... is not valid JSON"), which would echo the bytes of
 * whatever file a path or symlink points at.
 */
export function parseJsonText(text: string, where: string, maxDepth: number = ARTIFACT_LIMITS.jsonDepth): unknown {
  const depth = jsonDepth(text, maxDepth);
  if (depth > maxDepth) throw formatError(`${where}: JSON nests deeper than ${maxDepth} levels`);
  try {
    return JSON.parse(text);
  } catch (e) {
    const at = /position (\d+)/.exec((e as Error).message);
    const m = (e as Error).message;
    const hint = at ? ` (parsing stopped at character ${at[1]})` : /Unexpected end/.test(m) ? ' (it ends early)' : /Unexpected token/.test(m) ? ' (an unexpected character)' : '';
    throw formatError(`${where}: not valid JSON${hint}`);
  }
}

/** Nesting depth of JSON text (strings skipped), counted only up to `stop + 1`: a linear scan, no allocation. */
export function jsonDepth(text: string, stop: number): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // skip a string: up to the next quote not escaped by a backslash
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max && (max = depth) > stop) return max;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** A JSON file read within its budget, parsed without echoing its text on failure. */
export function readJsonFile(path: string, maxBytes: number, what: string): unknown {
  return parseJsonText(readBoundedFile(path, maxBytes, what).toString('utf8'), path);
}

/** Names for a message: the first few, clipped, and how many more there are. */
export function listNames(names: Iterable<string>, max = 8): string {
  const all = [...names];
  if (all.length === 0) return 'none';
  const shown = all.slice(0, max).map((n) => clip(n, 60));
  return all.length > max ? `${shown.join(', ')} and ${all.length - max} more` : shown.join(', ');
}

/** A JSON value from a file for a message: numbers as they are, strings clipped, arrays to their first items. */
export function brief(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  if (typeof v === 'string') return `'${clip(v, 40)}'`;
  if (Array.isArray(v)) return `[${v.slice(0, 8).map((x) => (Array.isArray(x) ? '[...]' : typeof x === 'object' && x !== null ? '{...}' : brief(x))).join(',')}${v.length > 8 ? `,...${v.length - 8} more` : ''}]`;
  return typeof v === 'object' ? 'an object' : typeof v;
}
