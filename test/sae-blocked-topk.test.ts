/**
 * The blocked TopK that the fused SAE encoder uses on wide SAEs (dSae >= 512 k) must give exactly what one
 * TopK over all features gives: same values, same feature ids, same order, ties to the lower id.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { GraphBuilder, TensorDataType, attr } from '../src/model/onnx/graph-builder.js';
import { blockedTopK, topKBlockSize } from '../src/model/blocks/sae.js';
import type { TopKSae } from '../src/model/sae/types.js';
import { OrtSession } from '../src/runtime/session.js';
import { Rng } from '../src/util/random.js';
import { tinyCheckpoint } from './helpers/tiny-checkpoint.js';

const dir = mkdtempSync(join(tmpdir(), 'toxscope-blocked-topk-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** One session computing both: pre [N, F] -> plain TopK (vals, idx) and blocked TopK (bvals, bidx), [N, k] each. */
async function bothTopKs(F: number, k: number, S: number): Promise<OrtSession> {
  const g = new GraphBuilder();
  const pre = g.input('pre', TensorDataType.FLOAT, ['n', F]);
  const [v, i] = g.node('TopK', [pre, g.constI64('k', [k])], { outputs: 2, attrs: { axis: attr.int(-1), largest: attr.int(1), sorted: attr.int(1) } });
  const [bv, bi] = blockedTopK(g, pre, F, k, S);
  for (const [name, t, type] of [['vals', v, TensorDataType.FLOAT], ['idx', i, TensorDataType.INT64], ['bvals', bv, TensorDataType.FLOAT], ['bidx', bi, TensorDataType.INT64]] as const) {
    g.node('Identity', [t], { outputs: [name] });
    g.output(name, type, ['n', k]);
  }
  const path = join(dir, `topk-${F}-${k}-${S}.onnx`);
  writeFileSync(path, g.encode([{ domain: '', version: 23 }]));
  return OrtSession.create(path, { threads: 1 });
}

/** Rows built to stress ties and block boundaries: [N, F]. */
function hardRows(F: number, k: number, S: number, rng: Rng): Float32Array[] {
  const normal = () => Float32Array.from({ length: F }, () => rng.normal());
  const coarse = () => Float32Array.from({ length: F }, () => Math.round(rng.normal() * 2) / 2); // few distinct values: ties everywhere
  const allEqual = new Float32Array(F).fill(0.25);
  const oneHotBlocks = new Float32Array(F).fill(-1); // one winner per block at its last slot, all equal
  for (let b = S - 1; b < F; b += S) oneHotBlocks[b] = 3;
  const denseBlock = new Float32Array(F).fill(-5); // every top value in one block, the rest tied below
  denseBlock.fill(2, 5 * S, 6 * S);
  const withInf = normal();
  withInf[7] = Infinity;
  withInf.fill(-Infinity, 0, F / 2);
  const signedZeros = Float32Array.from({ length: F }, (_, i) => (i % 3 === 0 ? -0 : i % 3 === 1 ? 0 : -1));
  // block 1 has the larger max, and a value tied with feature 0 in block 0: the tie must still go to feature 0
  const tieAcrossBlocks = new Float32Array(F).fill(-10);
  for (let j = 0; j < k - 1; j++) tieAcrossBlocks[S + j] = 2 + j;
  tieAcrossBlocks[S + k - 1] = 1;
  tieAcrossBlocks[0] = 1;
  return [normal(), normal(), coarse(), coarse(), allEqual, oneHotBlocks, denseBlock, withInf, signedZeros, tieAcrossBlocks];
}

describe('blocked TopK', () => {
  for (const [F, k, S] of [[2048, 4, 32], [4096, 8, 16], [1024, 16, 64], [512, 8, 64]] as const) {
    it(`equals one TopK over all ${F} features, order and ties included (k ${k}, blocks of ${S})`, async () => {
      const s = await bothTopKs(F, k, S);
      try {
        const rows = hardRows(F, k, S, new Rng(F + k));
        const pre = new Float32Array(rows.length * F);
        rows.forEach((r, i) => pre.set(r, i * F));
        const out = await s.run({ pre: { type: 'float32', data: pre, dims: [rows.length, F] } });
        expect(Array.from(out.bidx.data as BigInt64Array)).toEqual(Array.from(out.idx.data as BigInt64Array));
        // Object.is: bit-level equality, -0 and +0 told apart
        const [a, b] = [Array.from(out.bvals.data as Float32Array), Array.from(out.vals.data as Float32Array)];
        expect(a.every((x, i) => Object.is(x, b[i]))).toBe(true);
        // ties go to the lower id: the all-equal row (4) keeps features 0..k-1, the one-hot row (5) the first k
        // blocks' last slots, the last row (9) feature 0 over the tied one in the block with the larger max
        expect(Array.from(out.bidx.data as BigInt64Array).slice(4 * k, 5 * k)).toEqual(Array.from({ length: k }, (_, i) => BigInt(i)));
        expect(Array.from(out.bidx.data as BigInt64Array).slice(5 * k, 6 * k)).toEqual(Array.from({ length: k }, (_, i) => BigInt(i * S + S - 1)));
        expect(Array.from(out.bidx.data as BigInt64Array).slice(9 * k, 10 * k)).toEqual([...Array.from({ length: k - 1 }, (_, j) => BigInt(S + k - 2 - j)), 0n]);
      } finally {
        await s.close();
      }
    });
  }

  it('is used only where it pays off: dSae >= 512 k, blocks of about sqrt(dSae / k) dividing dSae', () => {
    expect(topKBlockSize(16384, 50)).toBe(0);
    expect(topKBlockSize(32768, 100)).toBe(0);
    expect(topKBlockSize(32768, 50)).toBe(32);
    expect(topKBlockSize(65536, 50)).toBe(64);
    expect(topKBlockSize(65536, 128)).toBe(32);
    expect(topKBlockSize(131072, 100)).toBe(64);
    expect(topKBlockSize(512 * 50 + 1, 50)).toBe(0); // no power-of-two block divides it
  });
});

describe('fused SAE encoder on a wide SAE (blocked TopK path)', () => {
  const tiny = tinyCheckpoint({ hiddenSize: 16, numLayers: 1, vocabSize: 100, seed: 3 });
  afterAll(() => tiny.cleanup());

  it('gives the k largest pre-activations in descending order, a tie between duplicated features to the lower id', async () => {
    const dModel = 16, k = 4, dSae = 512 * k; // dSae >= 512 k: blocked
    expect(topKBlockSize(dSae, k)).toBeGreaterThan(0);
    const rng = new Rng(21);
    // duplicated encoder rows (features f and f + 1024 identical) make exact ties between blocks far apart
    const wEnc = Float32Array.from({ length: dSae * dModel }, () => rng.normal());
    wEnc.copyWithin((dSae / 2) * dModel, 0, (dSae / 2) * dModel);
    const bEnc = new Float32Array(dSae).fill(0.1);
    const sae: TopKSae = { format: 'saelens', source: 'wide-random', dModel, dSae, k, wEnc, bEnc, inputBias: null, wDec: null, bDec: null };
    const engine = await ForwardEngine.open({ modelDir: tiny.dir, layer: 0, sae, cacheDir: join(dir, 'cache'), threads: 1 });
    try {
      const seqs = [[1, 2, 3, 4, 5], [99, 7]];
      const res = await engine.runResidual(seqs);
      const top = await engine.runTopK(seqs);
      for (let bt = 0; bt < top.batch * top.seqLen; bt++) {
        if (!top.mask[bt]) continue;
        const x = res.resid.subarray(bt * dModel, (bt + 1) * dModel);
        const pre = Array.from({ length: dSae }, (_, f) => {
          let s = bEnc[f];
          for (let i = 0; i < dModel; i++) s += x[i] * wEnc[f * dModel + i];
          return s;
        });
        const ids = Array.from(top.indices.subarray(bt * k, (bt + 1) * k));
        // the reference: pre-activations sorted descending, stably, so a tie goes to the lower id; each top
        // feature comes with its duplicate 1024 ids later, right after it
        const want = Array.from(pre.keys()).sort((a, b) => pre[b] - pre[a]).slice(0, k);
        expect(ids).toEqual(want);
        expect(ids).toEqual([want[0], want[0] + dSae / 2, want[2], want[2] + dSae / 2]);
        const vals = Array.from(top.values.subarray(bt * k, (bt + 1) * k));
        vals.forEach((v, j) => expect(v).toBeCloseTo(Math.max(0, pre[ids[j]]), 4));
      }
    } finally {
      await engine.close();
    }
  });
});
