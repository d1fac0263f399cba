/**
 * Hostile artifacts (issue #10 item 6), built byte by byte here, against the parsers: each is refused with a
 * 'format' error of bounded size, before the expensive work (expanding, inflating, allocating) happens.
 * `npm run -s bench -- artifacts` measures the same files' time and peak memory in child processes.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isToxScopeError } from '../src/errors.js';
import { Head } from '../src/head/head.js';
import { ARTIFACT_LIMITS, parseJsonText, readBoundedFile } from '../src/model/artifact-limits.js';
import { SafetensorsFile } from '../src/model/safetensors.js';
import { loadSae } from '../src/model/sae/load.js';
import { TorchFile } from '../src/model/sae/torch-file.js';
import { unpickle } from '../src/model/sae/unpickle.js';
import { ZipArchive } from '../src/model/sae/zip.js';
import { sha256File } from '../src/bundle/file-hash.js';
import {
  deepNestingPickle, exponentialMessagePickle, memoDagPickle, pushTensor, rawSafetensors, strideZeroTorchFile, torchZip, zipBombTorchFile,
} from './helpers/hostile-artifacts.js';
import { PickleWriter, writeTorchSave } from './helpers/torch-save.js';

const dir = mkdtempSync(join(tmpdir(), 'toxscope-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(bytes: Buffer, name = 'layer0.sae.pt'): string {
  const p = join(dir, `${n++}-${name}`);
  writeFileSync(p, bytes);
  return p;
}

/** The 'format' error `fn` throws; its message must stay short whatever the file held. */
function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(isToxScopeError(e) ? e.kind : e).toBe('format');
    const message = (e as Error).message;
    expect(message.length).toBeLessThan(1000);
    return message;
  }
  throw new Error('expected the artifact to be refused, it was accepted');
}
const openTorch = (path: string) => () => TorchFile.open(path).close();

describe('pickles (torch.save data.pkl)', () => {
  it('refuses a memo DAG of 2^26 key paths instead of expanding every path', () => {
    const bytes = torchZip(memoDagPickle(26));
    expect(bytes.length).toBeLessThan(4096); // a few hundred bytes of pickle
    expect(refusal(openTorch(file(bytes)))).toMatch(/more than 200000 tensor names \(shared or repeated dicts\?\)/);
  });

  it('still reads one tensor stored under two keys (tied weights are memo references too)', () => {
    const p = new PickleWriter().proto(2).emptyDict().mark().str('W_enc');
    pushTensor(p, { shape: [2, 2], numel: 4 });
    const t = p.put();
    p.str('W_dec').get(t).setitems();
    const f = TorchFile.open(file(torchZip(p.stop().bytes(), { '0': Buffer.from(new Float32Array([1, 2, 3, 4]).buffer) })));
    try {
      expect([...f.tensors.keys()]).toEqual(['W_enc', 'W_dec']);
      expect([...f.readF32('W_dec')]).toEqual([1, 2, 3, 4]);
    } finally {
      f.close();
    }
  });

  it('keeps an error message about a 2^40-path argument tuple short', () => {
    const message = refusal(openTorch(file(torchZip(exponentialMessagePickle(40)))));
    expect(message).toMatch(/_rebuild_tensor_v2 called with unexpected arguments \(\(\(2 items\), \(2 items\)\)\) \(pickle byte \d+\)$/);
  });

  it('refuses dicts nested 20,000 deep without overflowing the stack', () => {
    expect(refusal(openTorch(file(torchZip(deepNestingPickle(20_000)))))).toMatch(/dicts nested more than 64 deep/);
  });

  it('refuses a pickle past its work budget (one big dict re-applied by BUILD again and again)', () => {
    const p = new PickleWriter().proto(2).emptyDict().mark();
    for (let i = 0; i < 2000; i++) p.int(i).int(i);
    p.setitems();
    const big = p.put();
    p.op(0x30).emptyDict(); // POP
    for (let i = 0; i < 2000; i++) p.get(big).build();
    const bytes = p.stop().bytes();
    expect(() => unpickle(bytes, 'test.pkl')).not.toThrow();
    expect(refusal(() => unpickle(bytes, 'test.pkl', 1_000_000))).toMatch(/unpickling takes more than 1000000 steps/);
  });

  it('does not quote more than a short name of a refused global', () => {
    const p = new PickleWriter().proto(2).global('os', `system${'x'.repeat(100_000)}`);
    expect(refusal(() => unpickle(p.stop().bytes(), 'test.pkl'))).toMatch(/global 'os\.systemx+\.\.\.\(100009 chars\)', which is not allowed/);
  });
});

describe('zip archives', () => {
  it('refuses a data.pkl that declares 1 GiB before inflating any of it', () => {
    const bytes = zipBombTorchFile(1024, 2 ** 30);
    expect(bytes.length).toBeLessThan(2 ** 21);
    expect(refusal(openTorch(file(bytes)))).toMatch(/entry 'archive\/data\.pkl' declares 1073741824 bytes, more than the 67108864-byte limit/);
  });

  it('refuses a data.pkl whose compressed size cannot inflate to the size it declares', () => {
    expect(refusal(openTorch(file(zipBombTorchFile(64, 1024))))).toMatch(/compressed bytes cannot inflate to the 1024 bytes it declares/);
  });

  it('stops inflating at the declared size when the compressed size looks plausible', () => {
    // 8 KiB declared, 1 MiB of zeros inside: its ~1 KB of DEFLATE fits the declared size, the output does not
    const bytes = zipBombTorchFile(1, 8192);
    const zip = ZipArchive.open(file(bytes));
    try {
      expect(refusal(() => zip.read('archive/data.pkl', 1 << 20))).toMatch(/inflates past the 8192 bytes it declares/);
    } finally {
      zip.close();
    }
  });
});

describe('tensor views', () => {
  it('refuses a stride-0 view that would materialise 2^27 elements from a 4-byte storage', () => {
    expect(refusal(openTorch(file(strideZeroTorchFile(65_536, 2_048))))).toMatch(/tensor 'W_enc': view \(size \[65536,2048\], stride \[0,0\]\) has stride 0 on a dimension longer than 1/);
  });

  it('refuses views whose strides overlap, and accepts transposed and broadcast-free views', () => {
    const storage = { dtype: 'F32' as const, values: Array.from({ length: 12 }, (_, i) => i) };
    const p = join(dir, `${n++}-overlap.pt`);
    writeTorchSave(p, { storages: { '0': storage }, tensors: { w: { storage: '0', shape: [6, 3], stride: [1, 2] } } });
    expect(refusal(openTorch(p))).toMatch(/has overlapping strides/);
    const ok = join(dir, `${n++}-transposed.pt`);
    writeTorchSave(ok, { storages: { '0': storage }, tensors: { w: { storage: '0', shape: [4, 3], stride: [1, 4] }, one: { storage: '0', shape: [1, 3], stride: [0, 1] } } });
    const f = TorchFile.open(ok);
    try {
      expect([...f.readF32('w')]).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
      expect([...f.readF32('one')]).toEqual([0, 1, 2]);
    } finally {
      f.close();
    }
  });

  it('refuses shapes whose element count passes 2^32 (the product is checked, not rounded)', () => {
    const p = new PickleWriter().proto(2).emptyDict().str('w');
    pushTensor(p, { shape: [2 ** 20, 2 ** 20, 2 ** 20], stride: [2 ** 40, 2 ** 20, 1], numel: 1 });
    p.setitem();
    expect(refusal(openTorch(file(torchZip(p.stop().bytes()))))).toMatch(/has more than 4294967296 elements/);
  });

  it('refuses an SAE whose weights hold NaN, naming the tensor', () => {
    const d = 4, s = 8;
    const values = (len: number) => Array.from({ length: len }, (_, i) => i / len);
    const wEnc = values(s * d);
    wEnc[5] = NaN;
    const p = join(dir, `${n++}-nan`, 'layer0.sae.pt');
    mkdirSync(join(p, '..'));
    writeTorchSave(p, {
      storages: { '0': { dtype: 'F32', values: wEnc }, '1': { dtype: 'F32', values: values(s) }, '2': { dtype: 'F32', values: values(s * d) }, '3': { dtype: 'F32', values: values(d) } },
      tensors: { W_enc: { storage: '0', shape: [s, d] }, b_enc: { storage: '1', shape: [s] }, W_dec: { storage: '2', shape: [d, s] }, b_dec: { storage: '3', shape: [d] } },
    });
    expect(refusal(() => loadSae(p, { k: 2 }))).toMatch(/the SAE's encoder weights hold NaN at element 5: refusing non-finite weights/);
  });
});

describe('safetensors headers', () => {
  const open = (bytes: Buffer) => () => SafetensorsFile.open(file(bytes, 'x.safetensors')).close();

  it('refuses a header length past the limit before allocating it', () => {
    const bytes = Buffer.alloc(16);
    bytes.writeBigUInt64LE(2n ** 62n);
    expect(refusal(open(bytes))).toMatch(/header length 4611686018427387904 is more than the 100000000-byte limit/);
  });

  it('refuses shapes whose element count cannot be computed exactly, and ranks past 8', () => {
    expect(refusal(open(rawSafetensors({ w: { dtype: 'F32', shape: [2 ** 26, 2 ** 26, 2 ** 26, 2 ** 26], data_offsets: [0, 0] } })))).toMatch(/has more elements than can be counted exactly/);
    expect(refusal(open(rawSafetensors({ w: { dtype: 'F32', shape: Array(9).fill(1), data_offsets: [0, 4] } }, 4)))).toMatch(/at most 8 non-negative integers/);
  });

  it('refuses a header nested deeper than a safetensors header can be', () => {
    expect(refusal(open(rawSafetensors(`{"w": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`)))).toMatch(/JSON nests deeper than 4 levels/);
  });

  it('refuses __metadata__ that is not strings, and quotes no more than a short prefix of a bad dtype', () => {
    expect(refusal(open(rawSafetensors({ __metadata__: { a: [1] } })))).toMatch(/__metadata__ is not an object of strings/);
    const message = refusal(open(rawSafetensors({ w: { dtype: `F32${'z'.repeat(50_000)}`, shape: [1], data_offsets: [0, 4] } }, 4)));
    expect(message).toMatch(/unsupported dtype 'F32z+\.\.\.\(50003 chars\)'/);
  });
});

describe('JSON artifacts and files', () => {
  it('says where JSON parsing stopped without quoting the file (a symlink to a secret)', () => {
    const secret = join(dir, 'secret.txt');
    writeFileSync(secret, 'root:x:0:0:hunter2-password\n');
    const link = join(dir, 'config.json');
    symlinkSync(secret, link);
    const message = refusal(() => parseJsonText(readBoundedFile(link, 1024, 'config').toString('utf8'), link));
    expect(message).toBe(`${link}: not valid JSON (an unexpected character)`);
    expect(message).not.toMatch(/root|hunter2/);
  });

  it('refuses files that are not regular files (a symlink to /dev/zero) before reading or hashing them', () => {
    const link = join(dir, `${n++}-zero.json`);
    symlinkSync('/dev/zero', link);
    expect(refusal(() => readBoundedFile(link, ARTIFACT_LIMITS.smallJsonBytes, 'manifest'))).toMatch(/the manifest is not a regular file/);
    expect(refusal(() => sha256File(link))).toMatch(/not a regular file/);
  });

  it('refuses a JSON file larger than its budget before reading it', () => {
    const p = join(dir, `${n++}-big.json`);
    writeFileSync(p, `[${'0,'.repeat(600)}0]`);
    expect(refusal(() => readBoundedFile(p, 1000, 'rule'))).toMatch(/the rule is 1203 bytes, more than the 1000-byte limit/);
  });

  it('refuses a head whose sparse arrays declare 2^32 elements, before allocating them', () => {
    const sparse = { dtype: 'float32-sparse', length: 2 ** 32, indices: '', values: '' };
    const head = {
      format: 'toxscope-head', version: 1,
      transform: { dSae: 2 ** 32, parts: ['rate'], normalize: true, languages: [], idf: sparse },
      weights: sparse, bias: 0, calibration: { method: 'platt', a: 1, b: 0 }, thresholds: { pooled: 0.5, perLanguage: {} }, meta: {},
    };
    expect(refusal(() => Head.fromJSON(head, 'head.json'))).toMatch(/too big|<=67108864/i);
  });
});
