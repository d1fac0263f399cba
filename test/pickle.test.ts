import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isToxScopeError } from '../src/errors.js';
import { f32ToBf16 } from '../src/model/dtypes.js';
import { TorchFile } from '../src/model/sae/torch-file.js';
import { PickleWriter, TorchSaveSpec, torchPickle, torchSaveBytes, torchSaveEntries, writeTorchSave, writeZipSparse, zipBytes } from './helpers/torch-save.js';
import { ZipArchive } from '../src/model/sae/zip.js';

const dir = mkdtempSync(join(tmpdir(), 'toxscope-pickle-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const tmp = (name = 'x.pt') => join(dir, `${n++}-${name}`);

function save(spec: TorchSaveSpec): string {
  const p = tmp();
  writeTorchSave(p, spec);
  return p;
}
function withFile<T>(path: string, fn: (f: TorchFile) => T): T {
  const f = TorchFile.open(path);
  try {
    return fn(f);
  } finally {
    f.close();
  }
}
/** The error thrown by `fn`, asserted to be a 'format' ToxScopeError. */
function formatErrorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    expect(isToxScopeError(e) && e.kind).toBe('format');
    return e as Error;
  }
  throw new Error('expected an error, none was thrown');
}
const iota = (len: number, scale = 1) => Array.from({ length: len }, (_, i) => (i - len / 2) * scale);

describe('TorchFile reads what torch.save writes', () => {
  it('reads the reference Qwen-Scope file written by torch.save (names, shapes, archive folder)', () => {
    withFile('../shared/goldens/qscope-sae/layer2.sae.pt', (f) => {
      expect(f.archive).toBe('layer2.sae');
      expect([...f.tensors.keys()]).toEqual(['W_enc', 'W_dec', 'b_enc', 'b_dec']);
      expect(f.info('W_enc')).toMatchObject({ dtype: 'F32', shape: [512, 64], stride: [64, 1], parameter: false });
      expect(f.info('W_dec').shape).toEqual([64, 512]);
      expect(f.readF32('b_enc').length).toBe(512);
      expect(f.readF32('W_enc').every(Number.isFinite)).toBe(true);
    });
  });

  it('decodes float32, float16 and bfloat16 storages exactly', () => {
    const values = iota(24, 0.25); // multiples of 1/4: exact in every dtype
    const p = save({
      storages: { '0': { dtype: 'F32', values }, '1': { dtype: 'F16', values }, '2': { dtype: 'BF16', values } },
      tensors: { f32: { storage: '0', shape: [4, 6] }, f16: { storage: '1', shape: [4, 6] }, bf16: { storage: '2', shape: [2, 3, 4] } },
    });
    withFile(p, (f) => {
      expect(f.info('bf16').dtype).toBe('BF16');
      expect(f.info('f16').dtype).toBe('F16');
      for (const name of ['f32', 'f16', 'bf16']) expect(Array.from(f.readF32(name))).toEqual(values);
    });
  });

  it('keeps bf16 rounding: values come back as their nearest bfloat16', () => {
    const values = [Math.PI, -1e-3, 12345.678, 0];
    const p = save({ storages: { s: { dtype: 'BF16', values } }, tensors: { w: { storage: 's', shape: [4] } } });
    const bits = f32ToBf16(Float32Array.from(values));
    const expected = Array.from(new Float32Array(new Uint32Array(Array.from(bits, (b) => b << 16)).buffer));
    withFile(p, (f) => expect(Array.from(f.readF32('w'))).toEqual(expected));
  });

  it('reads nn.Parameter entries (_rebuild_parameter) as their data', () => {
    const p = save({
      storages: { '0': { dtype: 'F32', values: iota(6) } },
      tensors: { weight: { storage: '0', shape: [2, 3], parameter: true }, plain: { storage: '0', shape: [6] } },
    });
    withFile(p, (f) => {
      expect(f.info('weight').parameter).toBe(true);
      expect(f.info('plain').parameter).toBe(false);
      expect(Array.from(f.readF32('weight'))).toEqual(iota(6));
    });
  });

  it('materialises non-contiguous views: a transposed matrix, a strided column, an offset slice', () => {
    // storage holds a [3, 4] row-major matrix m[i][j] = 10 i + j
    const m = [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23];
    const p = save({
      storages: { m: { dtype: 'F32', values: m } },
      tensors: {
        mT: { storage: 'm', shape: [4, 3], stride: [1, 4] }, //             m.T
        col2: { storage: 'm', shape: [3], stride: [4], offset: 2 }, //        m[:, 2]
        rows12: { storage: 'm', shape: [2, 4], offset: 4 }, //                m[1:]
        cube: { storage: 'm', shape: [2, 2, 2], stride: [1, 4, 2] }, //      m[:2].view(2, 2, 2).permute(2, 0, 1)-like
      },
    });
    withFile(p, (f) => {
      expect(Array.from(f.readF32('mT'))).toEqual([0, 10, 20, 1, 11, 21, 2, 12, 22, 3, 13, 23]);
      expect(Array.from(f.readF32('col2'))).toEqual([2, 12, 22]);
      expect(Array.from(f.readF32('rows12'))).toEqual([10, 11, 12, 13, 20, 21, 22, 23]);
      // cube[a][b][c] = storage[a + 4b + 2c]
      expect(Array.from(f.readF32('cube'))).toEqual([0, 2, 10, 12, 1, 3, 11, 13]);
    });
  });

  it('reads OrderedDict containers and nested dicts as dotted names', () => {
    const p = save({
      container: 'OrderedDict',
      storages: { '0': { dtype: 'F32', values: [1, 2] }, '1': { dtype: 'F32', values: [3] } },
      tensors: { encoder: { weight: { storage: '0', shape: [2] }, bias: { storage: '1', shape: [1] } }, top: { storage: '1', shape: [] } },
    });
    withFile(p, (f) => {
      expect([...f.tensors.keys()]).toEqual(['encoder.weight', 'encoder.bias', 'top']);
      expect(Array.from(f.readF32('encoder.weight'))).toEqual([1, 2]);
      expect(Array.from(f.readF32('top'))).toEqual([3]);
    });
  });

  it('reads ZIP64 records, data descriptors, a DEFLATEd data.pkl and any archive folder name', () => {
    const spec: TorchSaveSpec = {
      archive: 'layer7.sae',
      storages: { '0': { dtype: 'F16', values: iota(8) } },
      tensors: { w: { storage: '0', shape: [2, 4] } },
      zip: { zip64: true, dataDescriptor: true },
      deflatePickle: true,
    };
    withFile(save(spec), (f) => {
      expect(f.archive).toBe('layer7.sae');
      expect(Array.from(f.readF32('w'))).toEqual(iota(8));
    });
  });

  it('reads storages that start past 4 GiB through ZIP64 offsets (sparse file)', () => {
    const entries = torchSaveEntries({
      storages: { '0': { dtype: 'F32', values: iota(6) }, '1': { dtype: 'BF16', values: iota(4) } },
      tensors: { near: { storage: '0', shape: [2, 3] }, far: { storage: '1', shape: [2, 2], stride: [1, 2] } },
    });
    const FAR = 2 ** 32 + 12345;
    entries[2].holeBefore = FAR; // storage '1' lies past 4 GiB
    const p = tmp();
    writeZipSparse(p, entries, { zip64: true });
    const zip = ZipArchive.open(p);
    try {
      expect(zip.entry('archive/data/1').localHeaderOffset).toBeGreaterThan(2 ** 32);
    } finally {
      zip.close();
    }
    withFile(p, (f) => {
      expect(Array.from(f.readF32('near'))).toEqual(iota(6));
      const v = iota(4);
      expect(Array.from(f.readF32('far'))).toEqual([v[0], v[2], v[1], v[3]]);
    });
  });
});

describe('TorchFile refuses hostile or broken files with clear errors', () => {
  /** a zip holding archive/data.pkl = `pickle` and no storages */
  const pickleFile = (pickle: Buffer) => {
    const p = tmp();
    writeFileSync(p, zipBytes([{ name: 'archive/data.pkl', data: pickle }]));
    return p;
  };

  it('refuses a posix.system global without calling it', () => {
    const pkl = new PickleWriter().proto(2).global('posix', 'system').str('touch /tmp/pwned').tupleN(1).reduce().stop().bytes();
    const e = formatErrorOf(() => TorchFile.open(pickleFile(pkl)));
    expect(e.message).toMatch(/global 'posix\.system'.*not allowed/);
    expect(e.message).toContain('archive/data.pkl');
  });

  it('refuses a forbidden global reached through STACK_GLOBAL as well', () => {
    const pkl = new PickleWriter().proto(4).str('builtins').str('eval').op(0x93).stop().bytes();
    expect(formatErrorOf(() => TorchFile.open(pickleFile(pkl))).message).toMatch(/global 'builtins\.eval'/);
  });

  it('refuses calling an allowed global that is not a callable (a storage type)', () => {
    const pkl = new PickleWriter().proto(2).global('torch', 'FloatStorage').emptyTuple().reduce().stop().bytes();
    expect(formatErrorOf(() => TorchFile.open(pickleFile(pkl))).message).toMatch(/REDUCE on global 'torch\.FloatStorage'/);
  });

  it('refuses an unknown opcode, naming it', () => {
    const pkl = new PickleWriter().proto(2).emptyDict().op(0x69).stop().bytes(); // 'i' = INST
    expect(formatErrorOf(() => TorchFile.open(pickleFile(pkl))).message).toMatch(/opcode 0x69 'i'.*not allowed.*pickle byte 3/);
    const newobj = new PickleWriter().proto(2).emptyDict().op(0x81).stop().bytes();
    expect(formatErrorOf(() => TorchFile.open(pickleFile(newobj))).message).toMatch(/opcode 0x81/);
  });

  it('refuses a truncated pickle', () => {
    const full = torchPickle({ storages: { '0': { dtype: 'F32', values: [1] } }, tensors: { w: { storage: '0', shape: [1] } } });
    expect(formatErrorOf(() => TorchFile.open(pickleFile(full.subarray(0, 60)))).message).toMatch(/truncated|not terminated/);
  });

  it('refuses truncated zips', () => {
    const bytes = torchSaveBytes({ storages: { '0': { dtype: 'F32', values: iota(64) } }, tensors: { w: { storage: '0', shape: [64] } } });
    const cut = (len: number) => {
      const p = tmp();
      writeFileSync(p, bytes.subarray(0, len));
      return p;
    };
    expect(formatErrorOf(() => TorchFile.open(cut(bytes.length - 10))).message).toMatch(/no end-of-central-directory record/);
    expect(formatErrorOf(() => TorchFile.open(cut(10))).message).toMatch(/not a zip archive|no end-of-central-directory/);
    // a central directory that claims entries past the end of the file
    const lying = Buffer.from(bytes);
    const eocd = lying.length - 22;
    lying.writeUInt32LE(lying.readUInt32LE(eocd + 16) + 1000, eocd + 16);
    const p = tmp();
    writeFileSync(p, lying);
    expect(formatErrorOf(() => TorchFile.open(p)).message).toMatch(/central directory .* runs past the end/);
  });

  it('refuses a zip with a bad local header signature, naming the entry', () => {
    const bytes = torchSaveBytes({ storages: { '0': { dtype: 'F32', values: [1] } }, tensors: { w: { storage: '0', shape: [1] } } });
    bytes.writeUInt32LE(0xdeadbeef, 0); // data.pkl's local header
    const p = tmp();
    writeFileSync(p, bytes);
    expect(formatErrorOf(() => TorchFile.open(p)).message).toMatch(/entry 'archive\/data\.pkl': bad local header signature/);
  });

  it('refuses a storage whose declared size is larger than its data', () => {
    const p = save({ storages: { '0': { dtype: 'F32', values: iota(4), numel: 400 } }, tensors: { w: { storage: '0', shape: [400] } } });
    expect(formatErrorOf(() => TorchFile.open(p)).message).toMatch(/tensor 'w': storage '0' declares 400 F32 elements \(1600 bytes\) but its zip entry holds 16 bytes/);
  });

  it('refuses a view that reaches past the end of its storage', () => {
    const p = save({ storages: { '0': { dtype: 'F32', values: iota(12) } }, tensors: { w: { storage: '0', shape: [3, 4], offset: 2 } } });
    expect(formatErrorOf(() => TorchFile.open(p)).message).toMatch(/tensor 'w': view \(offset 2, size \[3,4\], stride \[4,1\]\) reaches element 13 of storage '0', which has 12 elements/);
  });

  it('refuses a storage record with no zip entry', () => {
    const p = tmp();
    const pkl = torchPickle({ storages: { '9': { dtype: 'F32', values: [1] } }, tensors: { w: { storage: '9', shape: [1] } } });
    writeFileSync(p, zipBytes([{ name: 'archive/data.pkl', data: pkl }]));
    expect(formatErrorOf(() => TorchFile.open(p)).message).toMatch(/storage '9' has no zip entry 'archive\/data\/9'/);
  });

  it('refuses the legacy pre-1.6 format and files that are not zips', () => {
    const legacy = tmp();
    writeFileSync(legacy, new PickleWriter().proto(2).emptyDict().stop().bytes());
    expect(formatErrorOf(() => TorchFile.open(legacy)).message).toMatch(/legacy .* not supported/);
    const junk = tmp();
    writeFileSync(junk, Buffer.alloc(1000, 7));
    expect(formatErrorOf(() => TorchFile.open(junk)).message).toMatch(/no end-of-central-directory/);
  });
});
