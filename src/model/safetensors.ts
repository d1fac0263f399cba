/**
 * Safetensors, read lazily and validated, and written.
 *
 * Layout: u64 little-endian header length N | N bytes of JSON header | data.
 * Header: { "__metadata__"?: {str: str}, "<name>": { dtype, shape, data_offsets: [begin, end] } }
 * with offsets relative to the start of the data section. Tensors are read with positional reads,
 * so files of many GB and offsets past 4 GiB never need the whole file in memory. The header is bounded
 * (size, nesting, tensor count, rank, element count: src/model/artifact-limits.ts) and every tensor's bytes are
 * checked against its shape and the file before anything is read.
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { formatError } from '../errors.js';
import { ARTIFACT_LIMITS, brief, checkedProduct, clip, parseJsonText } from './artifact-limits.js';
import { DTYPE_BYTES, DType, decodeToF32, isDType } from './dtypes.js';

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** absolute byte offset of the tensor's data in its file */
  offset: number;
  byteLength: number;
  file: string;
}

const MAX_HEADER = ARTIFACT_LIMITS.safetensorsHeaderBytes;

export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly dataStart: number;
  private fd: number | null;

  private constructor(path: string, fd: number, metadata: Record<string, string>, tensors: Map<string, TensorInfo>, dataStart: number) {
    this.path = path;
    this.fd = fd;
    this.metadata = metadata;
    this.tensors = tensors;
    this.dataStart = dataStart;
  }

  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw formatError(`${path}: cannot open safetensors file (${(e as Error).message})`);
    }
    try {
      return SafetensorsFile.parse(path, fd);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  private static parse(path: string, fd: number): SafetensorsFile {
    const fileSize = fstatSync(fd).size;
    if (fileSize < 8) throw formatError(`${path}: truncated safetensors file (${fileSize} bytes, no header length)`);
    const lenBuf = Buffer.alloc(8);
    readFully(fd, lenBuf, 0, path);
    const headerLen64 = lenBuf.readBigUInt64LE(0);
    if (headerLen64 > BigInt(MAX_HEADER)) throw formatError(`${path}: header length ${headerLen64} is more than the ${MAX_HEADER}-byte limit (corrupted file?)`);
    const headerLen = Number(headerLen64);
    if (8 + headerLen > fileSize) throw formatError(`${path}: truncated safetensors file: header of ${headerLen} bytes but file is ${fileSize} bytes`);
    const headerBuf = Buffer.alloc(headerLen);
    readFully(fd, headerBuf, 8, path);
    const header = parseJsonText(headerBuf.toString('utf8'), `${path}: safetensors header`, 4);
    if (typeof header !== 'object' || header === null || Array.isArray(header)) throw formatError(`${path}: safetensors header is not a JSON object`);
    const names = Object.keys(header);
    if (names.length > ARTIFACT_LIMITS.tensors) throw formatError(`${path}: ${names.length} header entries, more than the limit of ${ARTIFACT_LIMITS.tensors}`);
    const dataStart = 8 + headerLen;
    const dataSize = fileSize - dataStart;
    let metadata: Record<string, string> = {};
    const tensors = new Map<string, TensorInfo>();
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (raw !== null && (typeof raw !== 'object' || Array.isArray(raw) || !Object.values(raw).every((v) => typeof v === 'string')))
          throw formatError(`${path}: __metadata__ is not an object of strings`);
        metadata = (raw ?? {}) as Record<string, string>;
        continue;
      }
      if (name.length > ARTIFACT_LIMITS.nameChars) throw formatError(`${path}: a tensor name is longer than ${ARTIFACT_LIMITS.nameChars} characters ('${clip(name)}')`);
      tensors.set(name, validateEntry(path, name, raw, dataStart, dataSize));
    }
    // Ranges must tile the data section without overlaps (holes are tolerated, overlaps are not).
    const sorted = [...tensors.values()].sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1];
      if (prev.offset + prev.byteLength > sorted[i].offset)
        throw formatError(`${path}: tensors '${clip(prev.name)}' and '${clip(sorted[i].name)}' overlap in the data section`);
    }
    return new SafetensorsFile(path, fd, metadata, tensors, dataStart);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw formatError(`${this.path}: no tensor '${clip(name)}'`);
    return t;
  }

  /** Raw little-endian bytes of one tensor (positional read; the buffer is owned by the caller). */
  readBytes(name: string): Buffer {
    const t = this.info(name);
    if (this.fd === null) throw formatError(`${this.path}: file is closed`);
    const buf = Buffer.allocUnsafe(t.byteLength);
    readFully(this.fd, buf, t.offset, `${this.path} tensor '${name}'`);
    return buf;
  }

  /** Any floating tensor as float32 (bf16 and f16 decoded exactly). */
  readF32(name: string): Float32Array {
    const t = this.info(name);
    return decodeToF32(t.dtype, this.readBytes(name), `${this.path} tensor '${name}'`);
  }

  /** Integer or bool tensors, as their natural typed array. */
  readTyped(name: string): Float32Array | BigInt64Array | Int32Array | Uint8Array {
    const t = this.info(name);
    const b = this.readBytes(name);
    const ab = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
    switch (t.dtype) {
      case 'I64': return new BigInt64Array(ab);
      case 'I32': return new Int32Array(ab);
      case 'U8':
      case 'BOOL': return new Uint8Array(ab);
      default: return this.readF32(name);
    }
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

function validateEntry(path: string, name: string, raw: unknown, dataStart: number, dataSize: number): TensorInfo {
  const where = `${path}: tensor '${clip(name)}'`;
  if (typeof raw !== 'object' || raw === null) throw formatError(`${where}: header entry is not an object`);
  const { dtype, shape, data_offsets: offs } = raw as Record<string, unknown>;
  if (typeof dtype !== 'string' || !isDType(dtype)) throw formatError(`${where}: unsupported dtype ${brief(dtype)}`);
  if (!Array.isArray(shape) || shape.length > ARTIFACT_LIMITS.rank || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
    throw formatError(`${where}: shape ${brief(shape)} is not a list of at most ${ARTIFACT_LIMITS.rank} non-negative integers`);
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0) || offs[0] > offs[1])
    throw formatError(`${where}: data_offsets ${brief(offs)} are not [begin, end] with begin <= end`);
  // the byte range is checked against the file below: the product only has to stay exact
  const numel = checkedProduct(shape as number[], Number.MAX_SAFE_INTEGER);
  if (numel === null) throw formatError(`${where}: shape ${brief(shape)} has more elements than can be counted exactly`);
  const expected = numel * DTYPE_BYTES[dtype];
  const byteLength = offs[1] - offs[0];
  if (byteLength !== expected)
    throw formatError(`${where}: shape ${brief(shape)} x ${dtype} needs ${expected} bytes but data_offsets span ${byteLength}`);
  if (offs[1] > dataSize)
    throw formatError(`${where}: data ends at byte ${offs[1]} of the data section but only ${dataSize} bytes are present (truncated file?)`);
  return { name, dtype, shape: shape as number[], offset: dataStart + offs[0], byteLength, file: path };
}

function readFully(fd: number, buf: Buffer, position: number, where: string): void {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, Math.min(buf.length - done, 1 << 30), position + done); // readSync takes < 2 GiB per call
    if (n === 0) throw formatError(`${where}: unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

// ---------------------------------------------------------------- writer

export interface TensorToWrite {
  dtype: DType;
  shape: number[];
  /** raw little-endian element data, already in `dtype` */
  data: ArrayBufferView;
}

/** Write a safetensors file (tensors in the given order, 8-byte aligned header as the reference writer does). */
export function writeSafetensors(path: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const need = numel * DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== need) throw formatError(`writing ${path}: tensor '${name}' has ${t.data.byteLength} bytes, shape x dtype needs ${need}`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + need] };
    offset += need;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.length));
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, len);
    writeSync(fd, headerBytes);
    for (const t of Object.values(tensors)) writeSync(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  } finally {
    closeSync(fd);
  }
}
