/**
 * Numeric arrays inside JSON artifacts: little-endian float32 / int32 bytes as base64 (exact and about
 * a quarter of the size of decimal text), with the element count stated so truncation is caught.
 *
 *   { "dtype": "float32", "length": n, "base64": "..." }
 *   { "dtype": "float32-sparse", "length": n, "indices": "<int32 base64>", "values": "<float32 base64>" }
 *
 * (Every platform Node supports is little-endian; TypedArrays use native order.)
 */
import { z } from 'zod';
import { formatError } from '../errors.js';

/** Most elements one array may declare (64 Mi float32: 256 MiB, past any head or rule): a sparse array's length
 * is allocated before its entries are read, so a hostile `length` must be refused by the schema. */
export const MAX_F32_ARRAY_LENGTH = 2 ** 26;
const arrayLength = z.number().int().nonnegative().max(MAX_F32_ARRAY_LENGTH);
export const denseF32Schema = z.object({ dtype: z.literal('float32'), length: arrayLength, base64: z.string() });
export const sparseF32Schema = z.object({
  dtype: z.literal('float32-sparse'), length: arrayLength, indices: z.string(), values: z.string(),
});
export const f32ArraySchema = z.discriminatedUnion('dtype', [denseF32Schema, sparseF32Schema]);
export type F32ArrayJson = z.infer<typeof f32ArraySchema>;

const toBase64 = (a: Float32Array | Int32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');

function fromBase64<T extends Float32Array | Int32Array>(text: string, ctor: { new (n: number): T }, count: number, what: string): T {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length !== count * 4) throw formatError(`${what}: expected ${count} elements (${count * 4} bytes), decoded ${bytes.length} bytes`);
  const out = new ctor(count);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

/** Dense unless at most a third of the entries are non-zero (then indices + values are smaller). */
export function encodeF32(a: Float32Array, allowSparse = true): F32ArrayJson {
  let nnz = 0;
  for (const v of a) if (v !== 0) nnz++;
  if (!allowSparse || nnz * 3 > a.length) return { dtype: 'float32', length: a.length, base64: toBase64(a) };
  const indices = new Int32Array(nnz), values = new Float32Array(nnz);
  let k = 0;
  a.forEach((v, i) => {
    if (v !== 0) { indices[k] = i; values[k++] = v; }
  });
  return { dtype: 'float32-sparse', length: a.length, indices: toBase64(indices), values: toBase64(values) };
}

/** Decodes and checks: right byte count, finite values, sparse indices ascending and in range. */
export function decodeF32(j: F32ArrayJson, what: string): Float32Array {
  let out: Float32Array;
  if (j.dtype === 'float32') {
    out = fromBase64(j.base64, Float32Array, j.length, what);
  } else {
    const nnz = Buffer.from(j.indices, 'base64').length / 4;
    const indices = fromBase64(j.indices, Int32Array, Math.floor(nnz), `${what}.indices`);
    const values = fromBase64(j.values, Float32Array, indices.length, `${what}.values`);
    out = new Float32Array(j.length);
    let prev = -1;
    indices.forEach((i, k) => {
      if (i <= prev || i >= j.length) throw formatError(`${what}: sparse index ${i} at position ${k} is not ascending within [0, ${j.length})`);
      out[i] = values[k];
      prev = i;
    });
  }
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) throw formatError(`${what}: element ${i} is ${out[i]}, expected a finite number`);
  }
  return out;
}

/** "<source>: <path>: <message>" for the first few issues of a failed zod parse. */
export function describeZodError(source: string, error: z.ZodError): string {
  // paths are keys from the file: clipped, so a message never carries much of it
  const clipKey = (k: PropertyKey) => (String(k).length > 40 ? `${String(k).slice(0, 40)}...` : String(k)).replace(/[\u0000-\u001f]/g, '?');
  const lines = error.issues.slice(0, 5).map((i) => `${i.path.length ? i.path.slice(0, 6).map(clipKey).join('.') : '(root)'}: ${i.message.slice(0, 200)}`);
  const more = error.issues.length > 5 ? `; and ${error.issues.length - 5} more` : '';
  return `${source}: ${lines.join('; ')}${more}`;
}
