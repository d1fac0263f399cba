/**
 * The fused TopK SAE encoder after the decoder: pre = (x - inputBias) @ wEnc^T + bEnc; top-k; relu,
 * checked against a plain TypeScript encode of the engine's own residual, and against the SAELens goldens.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import type { TopKSae } from '../src/model/sae/types.js';
import { SafetensorsFile } from '../src/model/safetensors.js';
import { Rng } from '../src/util/random.js';
import { goldenCheckpointDir, Goldens, goldensDir, readManifest } from './helpers/goldens.js';
import { tinyCheckpoint } from './helpers/tiny-checkpoint.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'toxscope-graph-sae-'));
const tiny = tinyCheckpoint({ hiddenSize: 32, numLayers: 2, vocabSize: 300, seed: 11 });
afterAll(() => {
  rmSync(cacheDir, { recursive: true, force: true });
  tiny.cleanup();
});

function randomSae(dModel: number, dSae: number, k: number, withBias: boolean, seed: number): TopKSae {
  const rng = new Rng(seed);
  const arr = (n: number, std: number) => Float32Array.from({ length: n }, () => std * rng.normal());
  return {
    format: 'saelens',
    source: `random-sae-${seed}`,
    dModel, dSae, k,
    wEnc: arr(dSae * dModel, 1), //        [dSae, dModel]
    bEnc: arr(dSae, 0.1), //               [dSae]
    inputBias: withBias ? arr(dModel, 0.05) : null,
    wDec: null,
    bDec: null,
  };
}

/** Plain TS encode of one token x [dModel]: the k largest pre-activations, relu'd, as id -> value. */
function encodeToken(sae: TopKSae, x: Float32Array): Map<number, number> {
  const pre = new Float64Array(sae.dSae);
  for (let f = 0; f < sae.dSae; f++) {
    let s = sae.bEnc[f];
    for (let i = 0; i < sae.dModel; i++) s += (x[i] - (sae.inputBias ? sae.inputBias[i] : 0)) * sae.wEnc[f * sae.dModel + i];
    pre[f] = s;
  }
  const order = Array.from(pre.keys()).sort((a, b) => pre[b] - pre[a]).slice(0, sae.k);
  return new Map(order.map((f) => [f, Math.max(0, pre[f])]));
}

describe('fused SAE encoder', () => {
  const seqs = [[1, 2, 3, 4, 5, 6, 7], [299, 0, 17], [42]];

  for (const withBias of [true, false]) {
    it(`gives the same top-k sets and relu'd values as a plain TypeScript encode (input bias ${withBias ? 'subtracted' : 'absent'})`, async () => {
      const sae = randomSae(32, 96, 8, withBias, withBias ? 5 : 6);
      const engine = await ForwardEngine.open({ modelDir: tiny.dir, layer: 1, sae, cacheDir, threads: 1 });
      try {
        expect(engine.info.outputs).toEqual(['resid_post', 'topk_values', 'topk_indices']);
        for (const padding of ['right', 'left'] as const) {
          const res = await engine.runResidual(seqs, padding);
          const top = await engine.runTopK(seqs, padding);
          expect([top.batch, top.seqLen, top.k]).toEqual([3, 7, 8]);
          expect(top.values).toHaveLength(3 * 7 * 8);
          expect(top.indices).toBeInstanceOf(Int32Array);
          expect(Array.from(top.mask)).toEqual(Array.from(res.mask));
          let checked = 0;
          for (let bt = 0; bt < top.batch * top.seqLen; bt++) {
            if (!top.mask[bt]) continue;
            const want = encodeToken(sae, res.resid.subarray(bt * 32, (bt + 1) * 32));
            const ids = Array.from(top.indices.subarray(bt * 8, (bt + 1) * 8));
            expect(new Set(ids)).toEqual(new Set(want.keys()));
            ids.forEach((f, j) => expect(top.values[bt * 8 + j]).toBeCloseTo(want.get(f)!, 4));
            checked++;
          }
          expect(checked).toBe(11);
        }
      } finally {
        await engine.close();
      }
    });
  }

  it('reproduces the SAELens goldens at layer 2 (top-k sets and values on real tokens)', async () => {
    const st = SafetensorsFile.open(join(goldensDir, 'sae-saelens-L2', 'sae_weights.safetensors'));
    const wEncIn = st.readF32('W_enc'); // [d_in, d_sae] in SAELens layout
    const [dModel, dSae] = st.info('W_enc').shape;
    const wEnc = new Float32Array(dSae * dModel); // -> [d_sae, d_in]
    for (let i = 0; i < dModel; i++) for (let f = 0; f < dSae; f++) wEnc[f * dModel + i] = wEncIn[i * dSae + f];
    const sae: TopKSae = { format: 'saelens', source: 'goldens/sae-saelens-L2', dModel, dSae, k: 16, layer: 2, wEnc, bEnc: st.readF32('b_enc'), inputBias: st.readF32('b_dec'), wDec: null, bDec: null };
    st.close();
    const goldens = new Goldens();
    const engine = await ForwardEngine.open({ modelDir: goldenCheckpointDir, layer: 2, sae, cacheDir, threads: 1 });
    try {
      const top = await engine.runTopK(readManifest().sequences, 'right');
      const gIdx = goldens.ints('right.sae.topk_indices').data; // [B, T, k]
      const gVal = goldens.f32('right.sae.topk_values').data;
      for (let bt = 0; bt < top.batch * top.seqLen; bt++) {
        if (!top.mask[bt]) continue;
        const ours = new Map(Array.from(top.indices.subarray(bt * 16, (bt + 1) * 16), (f, j) => [f, top.values[bt * 16 + j]]));
        const theirs = new Map(gIdx.slice(bt * 16, (bt + 1) * 16).map((f, j) => [f, gVal[bt * 16 + j]]));
        expect(new Set(ours.keys())).toEqual(new Set(theirs.keys()));
        for (const [f, v] of theirs) expect(Math.abs(ours.get(f)! - v)).toBeLessThan(1e-4);
      }
    } finally {
      await engine.close();
      goldens.close();
    }
  });

  it('refuses an SAE whose d_model differs from the model before building', async () => {
    const sae = randomSae(16, 32, 4, false, 7);
    await expect(ForwardEngine.open({ modelDir: tiny.dir, layer: 0, sae, cacheDir })).rejects.toThrow(/SAE d_model 16 does not match .* hidden_size 32/);
  });
});
