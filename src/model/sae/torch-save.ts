/**
 * Writes files in the layout `torch.save` produces (the demo SAE is one), so tests can also build well-formed and hostile
 * `.pt` files without Python:
 *
 *   zip (entries 64-byte aligned with an 'FB' padding extra field, like PyTorch's writer)
 *     <archive>/data.pkl     protocol-2 pickle: dict of _rebuild_tensor_v2(...) with persistent ids
 *     <archive>/data/<key>   raw little-endian storage bytes
 *     <archive>/version      '3'
 */
import { closeSync, ftruncateSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { crc32, deflateRawSync } from 'node:zlib';
import { f32ToBf16, f32ToF16 } from '../dtypes.js';

// ---------------------------------------------------------------- pickle

/** Emits pickle opcodes one by one (names as in CPython's pickletools). */
export class PickleWriter {
  private parts: Buffer[] = [];
  private memoNext = 0;

  op(byte: number, ...payload: Buffer[]): this {
    this.parts.push(Buffer.from([byte]), ...payload);
    return this;
  }
  proto(v = 2) { return this.op(0x80, Buffer.from([v])); }
  mark() { return this.op(0x28); }
  emptyDict() { return this.op(0x7d); }
  emptyList() { return this.op(0x5d); }
  emptyTuple() { return this.op(0x29); }
  tuple() { return this.op(0x74); }
  tupleN(n: 1 | 2 | 3) { return this.op(0x84 + n); }
  none() { return this.op(0x4e); }
  bool(v: boolean) { return this.op(v ? 0x88 : 0x89); }
  int(v: number): this {
    if (v >= 0 && v < 256) return this.op(0x4b, Buffer.from([v]));
    if (v >= 0 && v < 65536) return this.op(0x4d, u16(v));
    if (v >= -(2 ** 31) && v < 2 ** 31) {
      const b = Buffer.alloc(4);
      b.writeInt32LE(v);
      return this.op(0x4a, b);
    }
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(BigInt(v));
    return this.op(0x8a, Buffer.from([8]), b); // LONG1
  }
  float(v: number) {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(v);
    return this.op(0x47, b);
  }
  str(s: string) {
    const b = Buffer.from(s, 'utf8');
    return this.op(0x58, u32(b.length), b); // BINUNICODE
  }
  global(module: string, name: string) { return this.op(0x63, Buffer.from(`${module}\n${name}\n`, 'latin1')); }
  /** BINPUT the top of the stack; returns the memo index */
  put(): number {
    const i = this.memoNext++;
    this.op(0x71, Buffer.from([i]));
    return i;
  }
  get(i: number) { return this.op(0x68, Buffer.from([i])); }
  binpersid() { return this.op(0x51); }
  reduce() { return this.op(0x52); }
  build() { return this.op(0x62); }
  setitem() { return this.op(0x73); }
  setitems() { return this.op(0x75); }
  append() { return this.op(0x61); }
  stop() { return this.op(0x2e); }
  bytes(): Buffer { return Buffer.concat(this.parts); }
}

// ---------------------------------------------------------------- torch.save

export type StorageDtype = 'F32' | 'F16' | 'BF16';
const STORAGE_GLOBAL: Record<StorageDtype, string> = { F32: 'FloatStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage' };
const ELEM_BYTES: Record<StorageDtype, number> = { F32: 4, F16: 2, BF16: 2 };

export interface SavedStorage {
  dtype: StorageDtype;
  /** element values (encoded to dtype on write) */
  values: Float32Array | number[];
  /** declared numel in the persistent id; defaults to values.length (set it larger to lie) */
  numel?: number;
}
export interface SavedTensor {
  storage: string;
  shape: number[];
  /** defaults to row-major contiguous */
  stride?: number[];
  offset?: number;
  /** saved as nn.Parameter (wrapped in _rebuild_parameter) */
  parameter?: boolean;
}
export interface TorchSaveSpec {
  storages: Record<string, SavedStorage>;
  /** dict key -> tensor, or a nested dict of them */
  tensors: Record<string, SavedTensor | Record<string, SavedTensor>>;
  /** folder of data.pkl inside the zip (torch uses the file's stem) */
  archive?: string;
  /** the top-level container: a plain dict or collections.OrderedDict (a state_dict) */
  container?: 'dict' | 'OrderedDict';
  zip?: ZipOptions;
  /** DEFLATE data.pkl (other zip writers may) */
  deflatePickle?: boolean;
}

export function contiguousStride(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** The data.pkl torch.save writes for this dict (protocol 2, memoised globals as torch's pickler does). */
export function torchPickle(spec: TorchSaveSpec): Buffer {
  const p = new PickleWriter().proto(2);
  const memo = new Map<string, number>();
  const globalOnce = (module: string, name: string) => {
    const key = `${module}.${name}`;
    const m = memo.get(key);
    if (m !== undefined) p.get(m);
    else {
      p.global(module, name);
      memo.set(key, p.put());
    }
  };
  const container = () => {
    if (spec.container === 'OrderedDict') {
      globalOnce('collections', 'OrderedDict');
      p.emptyTuple().reduce();
    } else p.emptyDict();
    p.put();
  };
  const tensor = (t: SavedTensor) => {
    const st = spec.storages[t.storage];
    if (!st) throw new Error(`test spec: no storage ${t.storage}`);
    if (t.parameter) globalOnce('torch._utils', '_rebuild_parameter');
    globalOnce('torch._utils', '_rebuild_tensor_v2');
    p.mark();
    // persistent id ('storage', torch.XStorage, key, 'cpu', numel)
    p.mark().str('storage');
    globalOnce('torch', STORAGE_GLOBAL[st.dtype]);
    p.str(t.storage).str('cpu').int(st.numel ?? st.values.length).tuple().binpersid();
    p.int(t.offset ?? 0);
    p.mark();
    for (const d of t.shape) p.int(d);
    p.tuple();
    p.mark();
    for (const s of t.stride ?? contiguousStride(t.shape)) p.int(s);
    p.tuple();
    p.bool(false);
    globalOnce('collections', 'OrderedDict');
    p.emptyTuple().reduce();
    p.tuple().reduce();
    if (t.parameter) {
      // _rebuild_parameter(data, requires_grad, backward_hooks)
      p.bool(true);
      globalOnce('collections', 'OrderedDict');
      p.emptyTuple().reduce().tupleN(3).reduce();
    }
  };
  const dict = (entries: Record<string, SavedTensor | Record<string, SavedTensor>>) => {
    container();
    p.mark();
    for (const [k, v] of Object.entries(entries)) {
      p.str(k);
      if ('storage' in v && typeof v.storage === 'string') tensor(v as SavedTensor);
      else dict(v as Record<string, SavedTensor>);
    }
    p.setitems();
  };
  dict(spec.tensors);
  return p.stop().bytes();
}

export function storageBytes(s: SavedStorage): Buffer {
  const f = Float32Array.from(s.values);
  const typed = s.dtype === 'F32' ? f : s.dtype === 'BF16' ? f32ToBf16(f) : f32ToF16(f);
  const b = Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength);
  if (b.length !== s.values.length * ELEM_BYTES[s.dtype]) throw new Error('test helper: storage size mismatch');
  return b;
}

/** The zip entries of a torch.save file for `spec`: data.pkl, one entry per storage, version. */
export function torchSaveEntries(spec: TorchSaveSpec): ZipInput[] {
  const archive = spec.archive ?? 'archive';
  const entries: ZipInput[] = [{ name: `${archive}/data.pkl`, data: torchPickle(spec), deflate: spec.deflatePickle }];
  for (const [key, s] of Object.entries(spec.storages)) entries.push({ name: `${archive}/data/${key}`, data: storageBytes(s) });
  entries.push({ name: `${archive}/version`, data: Buffer.from('3\n') });
  return entries;
}

/** The bytes of a torch.save file for `spec`. */
export function torchSaveBytes(spec: TorchSaveSpec): Buffer {
  return zipBytes(torchSaveEntries(spec), spec.zip);
}

export function writeTorchSave(path: string, spec: TorchSaveSpec): void {
  writeFileSync(path, torchSaveBytes(spec));
}

// ---------------------------------------------------------------- zip

export interface ZipInput {
  name: string;
  data: Buffer;
  deflate?: boolean;
  /** leave this many unreferenced bytes before the entry's local header (a hole in a sparse file) */
  holeBefore?: number;
  /** hostile archives: DEFLATE bytes written as they are (data is then only used for the CRC), and the size to declare */
  compressed?: Buffer;
  declaredSize?: number;
}
export interface ZipOptions {
  /** write zip64 records and put 64-bit sizes/offsets in zip64 extra fields (32-bit fields = 0xFFFFFFFF) */
  zip64?: boolean;
  /** torch's style: local headers with zero sizes, flag bit 3, a data descriptor after the data */
  dataDescriptor?: boolean;
}

/** The archive as pieces at absolute positions (holes between them read as zeros), and its total size. */
export function zipPieces(inputs: ZipInput[], opts: ZipOptions = {}): { pieces: { at: number; data: Buffer }[]; size: number } {
  const pieces: { at: number; data: Buffer }[] = [];
  const central: Buffer[] = [];
  let pos = 0;
  const push = (b: Buffer) => {
    pieces.push({ at: pos, data: b });
    pos += b.length;
  };
  for (const e of inputs) {
    pos += e.holeBefore ?? 0;
    const name = Buffer.from(e.name, 'utf8');
    const data = e.compressed ?? (e.deflate ? deflateRawSync(e.data) : e.data);
    const crc = crc32(e.data);
    const size = e.declaredSize ?? e.data.length;
    const method = e.compressed || e.deflate ? 8 : 0;
    const offset = pos;
    const flags = 0x800 | (opts.dataDescriptor ? 0x8 : 0);
    // pad so that the data starts on a 64-byte boundary: 'FB' extra field of zeros ('Z' in torch)
    const fixed = 30 + name.length + 4;
    const padLen = (64 - ((offset + fixed) % 64)) % 64;
    const extra = Buffer.concat([u16(0x4246), u16(padLen), Buffer.alloc(padLen, 0x5a)]);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(opts.zip64 ? 45 : 20, 4);
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(method, 8);
    if (!opts.dataDescriptor) {
      local.writeUInt32LE(crc, 14);
      local.writeUInt32LE(data.length, 18);
      local.writeUInt32LE(Math.min(size, 0xffffffff), 22);
    }
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(extra.length, 28);
    push(Buffer.concat([local, name, extra, data]));
    if (opts.dataDescriptor) {
      const dd = Buffer.alloc(16);
      dd.writeUInt32LE(0x08074b50, 0);
      dd.writeUInt32LE(crc, 4);
      dd.writeUInt32LE(data.length, 8);
      dd.writeUInt32LE(Math.min(size, 0xffffffff), 12);
      push(dd);
    }
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(opts.zip64 ? 45 : 20, 4);
    c.writeUInt16LE(opts.zip64 ? 45 : 20, 6);
    c.writeUInt16LE(flags, 8);
    c.writeUInt16LE(method, 10);
    c.writeUInt32LE(crc, 16);
    let cExtra = Buffer.alloc(0);
    if (opts.zip64) {
      c.writeUInt32LE(0xffffffff, 20);
      c.writeUInt32LE(0xffffffff, 24);
      c.writeUInt32LE(0xffffffff, 42);
      cExtra = Buffer.concat([u16(0x0001), u16(24), u64(size), u64(data.length), u64(offset)]);
    } else {
      c.writeUInt32LE(data.length, 20);
      c.writeUInt32LE(size, 24);
      c.writeUInt32LE(offset, 42);
    }
    c.writeUInt16LE(name.length, 28);
    c.writeUInt16LE(cExtra.length, 30);
    central.push(Buffer.concat([c, name, cExtra]));
  }
  const cdOffset = pos;
  const cd = Buffer.concat(central);
  push(cd);
  if (opts.zip64) {
    const z = Buffer.alloc(56);
    z.writeUInt32LE(0x06064b50, 0);
    z.writeBigUInt64LE(44n, 4);
    z.writeUInt16LE(45, 12);
    z.writeUInt16LE(45, 14);
    z.writeBigUInt64LE(BigInt(inputs.length), 24);
    z.writeBigUInt64LE(BigInt(inputs.length), 32);
    z.writeBigUInt64LE(BigInt(cd.length), 40);
    z.writeBigUInt64LE(BigInt(cdOffset), 48);
    const zOffset = pos;
    push(z);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(zOffset), 8);
    loc.writeUInt32LE(1, 16);
    push(loc);
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(opts.zip64 ? 0xffff : inputs.length, 8);
  eocd.writeUInt16LE(opts.zip64 ? 0xffff : inputs.length, 10);
  eocd.writeUInt32LE(opts.zip64 ? 0xffffffff : cd.length, 12);
  eocd.writeUInt32LE(opts.zip64 ? 0xffffffff : cdOffset, 16);
  push(eocd);
  return { pieces, size: pos };
}

export function zipBytes(inputs: ZipInput[], opts: ZipOptions = {}): Buffer {
  const { pieces, size } = zipPieces(inputs, opts);
  const out = Buffer.alloc(size);
  for (const p of pieces) p.data.copy(out, p.at);
  return out;
}

/** Write the archive with its holes left sparse (files past 4 GiB cost no disk). */
export function writeZipSparse(path: string, inputs: ZipInput[], opts: ZipOptions = {}): void {
  const { pieces, size } = zipPieces(inputs, opts);
  const fd = openSync(path, 'w');
  try {
    for (const p of pieces) writeSync(fd, p.data, 0, p.data.length, p.at);
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
}

function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
}
function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}
function u64(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
}
