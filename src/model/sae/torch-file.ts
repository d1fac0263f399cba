/**
 * A `torch.save` file (PyTorch >= 1.6 zip format) holding a dict of tensors, read lazily:
 *
 *   <archive>/data.pkl      pickle of the dict (read by the restricted unpickler)
 *   <archive>/data/<key>    one STORED entry per storage: raw little-endian elements
 *   <archive>/byteorder     'little' (newer writers), <archive>/version
 *
 * Only the tensors asked for are read, and only the byte span their (offset, size, stride) covers.
 * Every view is checked at open against its storage and its zip entry: it must fit the storage, and its
 * elements must not alias (no stride 0 on a dimension longer than 1, no overlapping strides), so a tensor
 * never materialises more elements than the file really holds.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { formatError } from '../../errors.js';
import { ARTIFACT_LIMITS, checkedProduct, clip, listNames } from '../artifact-limits.js';
import { DTYPE_BYTES, bf16ToF32, f16ToF32 } from '../dtypes.js';
import { PyDict, PyValue, TensorRef, unpickle } from './unpickle.js';
import { ZipArchive } from './zip.js';

export interface TorchTensorInfo {
  name: string;
  dtype: TensorRef['storage']['dtype'];
  shape: number[];
  stride: number[];
  storageOffset: number;
  storageKey: string;
  parameter: boolean;
}

export class TorchFile {
  readonly path: string;
  /** the folder data.pkl is in: storages are `${archive}/data/<key>` */
  readonly archive: string;
  /** the unpickled object (usually a dict) */
  readonly root: PyValue;
  /** every tensor reachable through (nested) dicts, by dotted key */
  readonly tensors: ReadonlyMap<string, TensorRef>;
  private readonly zip: ZipArchive;

  private constructor(path: string, zip: ZipArchive, archive: string, root: PyValue, tensors: Map<string, TensorRef>) {
    this.path = path;
    this.zip = zip;
    this.archive = archive;
    this.root = root;
    this.tensors = tensors;
  }

  static open(path: string): TorchFile {
    refuseLegacyFormat(path);
    const zip = ZipArchive.open(path);
    try {
      const pkls = [...zip.entries.keys()].filter((n) => n === 'data.pkl' || /^[^/]+\/data\.pkl$/.test(n));
      if (pkls.length !== 1) throw formatError(`${path}: expected one '<archive>/data.pkl' entry in the zip, found ${listNames(pkls)} (not a torch.save file?)`);
      const archive = pkls[0].includes('/') ? pkls[0].slice(0, pkls[0].indexOf('/')) : '';
      const prefix = archive ? `${archive}/` : '';
      if (zip.entries.has(`${prefix}byteorder`)) {
        const order = zip.read(`${prefix}byteorder`, ARTIFACT_LIMITS.smallZipEntryBytes).toString('latin1').trim();
        if (order !== 'little') throw formatError(`${path}: tensors are stored '${clip(order, 16)}'-endian; only little-endian files are supported`);
      }
      const root = unpickle(zip.read(pkls[0], ARTIFACT_LIMITS.pickleBytes), `${path}: ${pkls[0]}`);
      const tensors = collectTensors(root, path);
      const file = new TorchFile(path, zip, archive, root, tensors);
      for (const name of tensors.keys()) file.checkExtent(name);
      return file;
    } catch (e) {
      zip.close();
      throw e;
    }
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TorchTensorInfo {
    const t = this.tensor(name);
    return { name, dtype: t.storage.dtype, shape: t.shape, stride: t.stride, storageOffset: t.storageOffset, storageKey: t.storage.key, parameter: t.parameter };
  }

  /**
   * A floating tensor as row-major float32 in its logical shape: strided views (a transposed
   * matrix saved as is) are gathered into contiguous order; bf16 and f16 are decoded exactly.
   */
  readF32(name: string): Float32Array {
    const t = this.tensor(name);
    const where = `${this.path}: tensor '${name}'`;
    const { dtype } = t.storage;
    if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') throw formatError(`${where}: dtype ${dtype} is not a floating type`);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel === 0) return new Float32Array(0);
    const eb = DTYPE_BYTES[dtype];
    const span = extent(t); // elements [storageOffset, storageOffset + span) hold every element of the view
    const entry = this.storageEntry(t);
    // Read the span's raw bytes straight into a typed array of the storage's element type: [span]
    const raw = dtype === 'F32' ? new Float32Array(span) : new Uint16Array(span);
    this.zip.readRangeInto(entry, t.storageOffset * eb, span * eb, new Uint8Array(raw.buffer));
    const values = raw instanceof Float32Array ? raw : dtype === 'BF16' ? bf16ToF32(raw) : f16ToF32(raw);
    if (isContiguous(t.shape, t.stride)) return values.length === numel ? values : values.slice(0, numel);
    return gather(values, t.shape, t.stride, numel);
  }

  close(): void {
    this.zip.close();
  }

  private tensor(name: string): TensorRef {
    const t = this.tensors.get(name);
    if (!t) throw formatError(`${this.path}: no tensor '${clip(name)}' (has ${listNames(this.tensors.keys())})`);
    return t;
  }

  private storageEntry(t: TensorRef): string {
    return `${this.archive ? `${this.archive}/` : ''}data/${t.storage.key}`;
  }

  /** The storage must fit its zip entry, and the view (offset, size, stride) must fit the storage without aliasing. */
  private checkExtent(name: string): void {
    const t = this.tensor(name);
    const where = `${this.path}: tensor '${clip(name)}'`;
    const entryName = this.storageEntry(t);
    const entry = this.zip.entries.get(entryName);
    if (!entry) throw formatError(`${where}: its storage '${t.storage.key}' has no zip entry '${entryName}'`);
    if (entry.method !== 0) throw formatError(`${where}: storage entry '${entryName}' is compressed; torch.save stores storages uncompressed`);
    const need = t.storage.numel * DTYPE_BYTES[t.storage.dtype];
    if (need > entry.size)
      throw formatError(`${where}: storage '${t.storage.key}' declares ${t.storage.numel} ${t.storage.dtype} elements (${need} bytes) but its zip entry holds ${entry.size} bytes`);
    if (t.shape.length > ARTIFACT_LIMITS.rank) throw formatError(`${where}: ${t.shape.length} dimensions, more than ${ARTIFACT_LIMITS.rank}`);
    const numel = checkedProduct(t.shape);
    if (numel === null) throw formatError(`${where}: size [${t.shape}] has more than ${ARTIFACT_LIMITS.tensorElements} elements`);
    if (numel === 0) return;
    const alias = aliasing(t.shape, t.stride);
    if (alias) throw formatError(`${where}: view (size [${t.shape}], stride [${t.stride}]) ${alias}: refusing a tensor that repeats storage elements`);
    if (t.storageOffset + extent(t) > t.storage.numel)
      throw formatError(
        `${where}: view (offset ${t.storageOffset}, size [${t.shape}], stride [${t.stride}]) reaches element ${t.storageOffset + extent(t) - 1} ` +
          `of storage '${t.storage.key}', which has ${t.storage.numel} elements`,
      );
  }
}

/** Number of storage elements from the view's first element to its last, inclusive (Infinity past 2^53). */
function extent(t: TensorRef): number {
  const e = 1 + t.shape.reduce((acc, d, i) => acc + (d - 1) * t.stride[i], 0);
  return Number.isSafeInteger(e) ? e : Infinity;
}

/**
 * Why the view's elements alias one another, or null when every index maps to its own storage element:
 * taking the dimensions longer than 1 from the smallest stride up, each stride must step past everything the
 * smaller ones span (the test PyTorch's own overlap check makes).
 */
function aliasing(shape: number[], stride: number[]): string | null {
  const dims = shape.map((d, i) => ({ d, s: stride[i] })).filter((x) => x.d > 1).sort((a, b) => a.s - b.s);
  let span = 1; // storage elements covered by the dimensions so far
  for (const { d, s } of dims) {
    if (s === 0) return 'has stride 0 on a dimension longer than 1';
    if (s < span) return 'has overlapping strides';
    span = s * (d - 1) + span;
  }
  return null;
}

function isContiguous(shape: number[], stride: number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i];
  }
  return true;
}

/** out[i0, i1, ...] = src[sum_j i_j * stride_j], row-major over shape. */
function gather(src: Float32Array, shape: number[], stride: number[], numel: number): Float32Array {
  const out = new Float32Array(numel);
  const rank = shape.length;
  const last = rank - 1;
  const idx = new Array<number>(rank).fill(0);
  let base = 0; // offset of the current row's first element
  for (let o = 0; o < numel; ) {
    // copy one innermost row with its stride
    const n = shape[last];
    const s = stride[last];
    for (let j = 0; j < n; j++) out[o++] = src[base + j * s];
    // advance the outer odometer
    for (let d = last - 1; d >= 0; d--) {
      idx[d]++;
      base += stride[d];
      if (idx[d] < shape[d]) break;
      base -= idx[d] * stride[d];
      idx[d] = 0;
    }
  }
  return out;
}

/**
 * Every tensor reachable through (nested) dicts, by dotted key. A dict the pickle shares between keys (a memo
 * reference) is reached once per path, so the walk is bounded: at most ARTIFACT_LIMITS.tensors names, dicts
 * visited and depth ARTIFACT_LIMITS.pickleDepth; past either the file is refused, not expanded.
 */
function collectTensors(root: PyValue, path: string): Map<string, TensorRef> {
  const out = new Map<string, TensorRef>();
  const limit = ARTIFACT_LIMITS.tensors;
  let visits = 0;
  let chars = 0;
  const walk = (v: PyValue, prefix: string, depth: number): void => {
    if (++visits > limit) throw formatError(`${path}: its dicts spell more than ${limit} tensor names (shared or repeated dicts?): refusing to expand them`);
    if (prefix.length > ARTIFACT_LIMITS.nameChars) throw formatError(`${path}: a tensor name is longer than ${ARTIFACT_LIMITS.nameChars} characters ('${clip(prefix)}')`);
    if ((chars += prefix.length) > 64 * limit) throw formatError(`${path}: its tensor names add up to more than ${64 * limit} characters`);
    if (v instanceof TensorRef) {
      out.set(prefix, v);
      return;
    }
    if (!(v instanceof PyDict)) return;
    if (depth >= ARTIFACT_LIMITS.pickleDepth) throw formatError(`${path}: dicts nested more than ${ARTIFACT_LIMITS.pickleDepth} deep`);
    for (const [k, child] of v.map) walk(child, prefix ? `${prefix}.${String(k)}` : String(k), depth + 1);
  };
  walk(root, '', 0);
  return out;
}

/** Before PyTorch 1.6 torch.save wrote a bare pickle stream: say so instead of "not a zip". */
function refuseLegacyFormat(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw formatError(`${path}: cannot open torch file (${(e as Error).message})`);
  }
  try {
    const head = Buffer.alloc(2);
    readSync(fd, head, 0, 2, 0);
    if (head[0] === 0x80 && head[1] <= 5)
      throw formatError(`${path}: legacy (pre-1.6, non-zip) torch.save format is not supported: re-save it with a current torch.save`);
  } finally {
    closeSync(fd);
  }
}
