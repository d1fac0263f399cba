/**
 * Hostile artifacts, built byte by byte (no Python): the attacks issue #10 item 6 reproduced on the parsers.
 * Each builder returns the file's bytes; tests and `bench artifacts` write them where they need them.
 */
import { constants, deflateRawSync } from 'node:zlib';
import { PickleWriter, zipBytes, type ZipInput } from './torch-save.js';

const POP = 0x30;

/** A float32 storage record and a _rebuild_tensor_v2 call on it: leaves one tensor on the pickle stack. */
export function pushTensor(p: PickleWriter, opts: { key?: string; numel?: number; shape?: number[]; stride?: number[]; offset?: number } = {}): PickleWriter {
  const shape = opts.shape ?? [1];
  const stride = opts.stride ?? shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  p.global('torch._utils', '_rebuild_tensor_v2');
  p.mark();
  p.mark().str('storage').global('torch', 'FloatStorage').str(opts.key ?? '0').str('cpu').int(opts.numel ?? 1).tuple().binpersid();
  p.int(opts.offset ?? 0);
  p.mark();
  for (const d of shape) p.int(d);
  p.tuple().mark();
  for (const s of stride) p.int(s);
  p.tuple().bool(false).global('collections', 'OrderedDict').emptyTuple().reduce();
  return p.tuple().reduce();
}

/**
 * Dicts whose two keys both point at the previous level's dict (memo references, BINGET): `levels` levels
 * spell 2^levels distinct key paths to one tensor in a few hundred bytes. Expanding every path (one map entry
 * per dotted key) is what exhausted the heap.
 */
export function memoDagPickle(levels: number): Buffer {
  const p = new PickleWriter().proto(2);
  pushTensor(p);
  let prev = p.put();
  for (let i = 0; i < levels; i++) {
    p.op(POP).emptyDict().mark().str('a').get(prev).str('b').get(prev).setitems();
    prev = p.put();
  }
  return p.stop().bytes();
}

/**
 * Tuples of two references to the previous tuple, passed as the arguments of a rebuild call that refuses them:
 * an error message that describes its arguments in full grows as 2^levels.
 */
export function exponentialMessagePickle(levels: number): Buffer {
  const p = new PickleWriter().proto(2);
  p.global('torch._utils', '_rebuild_tensor_v2');
  p.none().tupleN(1);
  let prev = p.put();
  for (let i = 0; i < levels; i++) {
    p.op(POP).get(prev).get(prev).tupleN(2);
    prev = p.put();
  }
  p.tupleN(1).reduce();
  return p.stop().bytes();
}

/** `depth` dicts nested in one another with a tensor at the bottom (recursive walkers overflow their stack). */
export function deepNestingPickle(depth: number): Buffer {
  const p = new PickleWriter().proto(2);
  for (let i = 0; i < depth; i++) p.emptyDict().str('x');
  pushTensor(p);
  for (let i = 0; i < depth; i++) p.setitem();
  return p.stop().bytes();
}

/** A torch.save zip around a given data.pkl: storages by key, and the pickle entry optionally replaced. */
export function torchZip(pickle: Buffer, storages: Record<string, Buffer> = { '0': Buffer.alloc(4) }, pickleEntry?: Partial<ZipInput>): Buffer {
  const entries: ZipInput[] = [{ name: 'archive/data.pkl', data: pickle, ...pickleEntry }];
  for (const [key, bytes] of Object.entries(storages)) entries.push({ name: `archive/data/${key}`, data: bytes });
  entries.push({ name: 'archive/version', data: Buffer.from('3\n') });
  return zipBytes(entries);
}

/**
 * A raw DEFLATE stream that inflates to `mib` MiB of zeros from about 1 KB per MiB: one compressed MiB ending in
 * a full flush (byte-aligned, no back-references across it) repeated, then an empty final block.
 */
export function deflateBomb(mib: number): Buffer {
  const chunk = deflateRawSync(Buffer.alloc(1 << 20), { level: 9, finishFlush: constants.Z_FULL_FLUSH });
  return Buffer.concat([...Array<Buffer>(mib).fill(chunk), Buffer.from([0x03, 0x00])]);
}

/** A torch.save zip whose data.pkl is a DEFLATE bomb of `mib` MiB, declared as `declaredSize` bytes. */
export function zipBombTorchFile(mib: number, declaredSize: number): Buffer {
  return torchZip(Buffer.alloc(0), undefined, { compressed: deflateBomb(mib), declaredSize });
}

/** A Qwen-Scope-shaped file whose W_enc [dSae, dModel] is a stride-0 view of a 1-element storage. */
export function strideZeroTorchFile(dSae: number, dModel: number): Buffer {
  const p = new PickleWriter().proto(2).emptyDict().mark();
  p.str('W_enc');
  pushTensor(p, { key: '0', numel: 1, shape: [dSae, dModel], stride: [0, 0] });
  p.str('b_enc');
  pushTensor(p, { key: '1', numel: dSae, shape: [dSae] });
  p.str('W_dec');
  pushTensor(p, { key: '2', numel: 1, shape: [dModel, dSae], stride: [0, 0] });
  p.str('b_dec');
  pushTensor(p, { key: '3', numel: dModel, shape: [dModel] });
  p.setitems();
  return torchZip(p.stop().bytes(), { '0': Buffer.alloc(4), '1': Buffer.alloc(4 * dSae), '2': Buffer.alloc(4), '3': Buffer.alloc(4 * dModel) });
}

/** A safetensors file from a header object written as is (no validation) and `dataBytes` zero bytes of data. */
export function rawSafetensors(header: unknown, dataBytes = 0): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, Buffer.alloc(dataBytes)]);
}
