/**
 * Qwen3.5 (qwen3_5, the Gated DeltaNet hybrid) against Hugging Face's own modeling_qwen3_5.py
 * (../shared/goldens/qwen3.5): the engine's residual stream at every layer, right-padded, left-padded and one by
 * one, from the single-file checkpoint and from a sharded copy of it (built here); the fused Qwen-Scope SAE's codes
 * and firing rates; and the TypeScript reference forward pass on the same goldens.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { denseRates, textFeatures } from '../src/engine/features.js';
import type { Padding } from '../src/engine/padding.js';
import type { TopKBatch } from '../src/engine/types.js';
import { Checkpoint } from '../src/model/checkpoint.js';
import { padBatch, referenceForward } from '../src/model/reference-forward.js';
import { loadSae } from '../src/model/sae/load.js';
import { SafetensorsFile, type TensorToWrite } from '../src/model/safetensors.js';
import { Goldens, goldensDir } from './helpers/goldens.js';
import { writeShards } from './helpers/tiny-qwen35.js';

const TOL = 1e-4;
const GOLD = 'qwen3.5/goldens.safetensors';
const modelDir = join(goldensDir, 'qwen3.5', 'qwen3.5-tiny');
const sequences: number[][] = JSON.parse(readFileSync(join(goldensDir, 'qwen3.5', 'manifest.json'), 'utf8')).sequences;
const L = 4, D = 64, S = sequences.length, T = 100, PAD = 1;

const tmp = mkdtempSync(join(tmpdir(), 'toxscope-qwen35-goldens-'));
const cacheDir = join(tmp, 'cache');
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The golden checkpoint re-written as 3 shards + index (a layer's tensors straddle files), config copied. */
function shardedCopy(): string {
  const dir = join(tmp, 'sharded');
  mkdirSync(dir);
  const st = SafetensorsFile.open(join(modelDir, 'model.safetensors'));
  try {
    const tensors: Record<string, TensorToWrite> = {};
    for (const [name, info] of st.tensors) tensors[name] = { dtype: info.dtype, shape: info.shape, data: st.readBytes(name) };
    writeShards(dir, tensors, 3);
  } finally {
    st.close();
  }
  copyFileSync(join(modelDir, 'config.json'), join(dir, 'config.json'));
  return dir;
}
/** Largest |got - golden| over real tokens; both [B, T, D] (golden from `offset`). */
function maxErrOnRealTokens(got: Float32Array, golden: Float32Array, mask: ArrayLike<number>, offset = 0): number {
  let worst = 0;
  for (let bt = 0; bt < mask.length; bt++) {
    if (Number(mask[bt]) !== 1) continue;
    for (let i = 0; i < D; i++) worst = Math.max(worst, Math.abs(got[bt * D + i] - golden[offset + bt * D + i]));
  }
  return worst;
}

for (const [label, dir] of [['single-file', () => modelDir], ['sharded', shardedCopy]] as const) {
  describe(`Qwen3.5 engine vs the Hugging Face goldens (${label} checkpoint)`, () => {
    const goldens = new Goldens(GOLD);
    afterAll(() => goldens.close());
    const checkpointDir = dir();

    for (let layer = 0; layer < L; layer++) {
      it(`matches resid_post after layer ${layer} (${layer === 3 ? 'gated full attention' : 'Gated DeltaNet'}): right-padded, left-padded and one by one`, async () => {
        const engine = await ForwardEngine.open({ modelDir: checkpointDir, layer, cacheDir, threads: 1 });
        try {
          expect(engine.info.family).toBe('qwen3_5');
          for (const padding of ['right', 'left'] as const) {
            const out = await engine.runResidual(sequences, padding);
            expect([out.batch, out.seqLen, out.dModel]).toEqual([S, T, D]);
            expect(Array.from(out.mask), 'our padding is the goldens\' padding').toEqual(goldens.ints(`${padding}.attention_mask`).data);
            expect(maxErrOnRealTokens(out.resid, goldens.f32(`${padding}.resid_post.${layer}`).data, out.mask), `${padding} layer ${layer}`).toBeLessThan(TOL);
            expect(out.resid.every(Number.isFinite), 'pad positions stay finite').toBe(true);
          }
          for (let i = 0; i < S; i++) {
            const out = await engine.runResidual([sequences[i]]);
            expect(maxErrOnRealTokens(out.resid, goldens.f32(`unbatched.${i}.resid_post.${layer}`).data, out.mask), `sequence ${i} layer ${layer}`).toBeLessThan(TOL);
          }
        } finally {
          await engine.close();
        }
      });
    }
  });
}

describe('Qwen3.5 engine + fused Qwen-Scope SAE (qscope-sae/layer3.sae.pt) vs goldens', () => {
  const goldens = new Goldens(GOLD);
  afterAll(() => goldens.close());
  const sae = loadSae(join(goldensDir, 'qwen3.5', 'qscope-sae', 'layer3.sae.pt'), { k: 32 });
  const dSae = 512, K = 32;

  /** Dense [T, dSae] codes of row b from a top-k batch (values at kept indices). */
  function dense(values: ArrayLike<number>, indices: ArrayLike<number>, b: number, t: number, seqLen: number): Float32Array {
    const out = new Float32Array(dSae);
    const at = (b * seqLen + t) * K;
    for (let j = 0; j < K; j++) if (values[at + j] > 0) out[indices[at + j]] = values[at + j];
    return out;
  }
  const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
  const rates = (top: TopKBatch) => textFeatures(top).map((tf) => Array.from(denseRates(tf, dSae)));

  for (const padding of ['right', 'left'] as Padding[]) {
    it(`${padding}-padded batch: codes within 1e-4 on every real token, firing rates exactly`, async () => {
      const engine = await ForwardEngine.open({ modelDir, layer: 3, sae, cacheDir, threads: 1 });
      try {
        const top = await engine.runTopK(sequences, padding);
        const gv = goldens.f32(`${padding}.sae.L3.topk_values`).data;
        const gi = goldens.ints(`${padding}.sae.L3.topk_indices`).data;
        let checked = 0;
        for (let b = 0; b < S; b++)
          for (let t = 0; t < T; t++) {
            if (!top.mask[b * T + t]) continue;
            expect(maxDiff(dense(top.values, top.indices, b, t, T), dense(gv, gi, b, t, T)), `${padding} text ${b} token ${t}`).toBeLessThan(TOL);
            checked++;
          }
        expect(checked).toBe(193);
        const gold = goldens.f32(`${padding}.sae.L3.firing_rates`).data;
        rates(top).forEach((r, b) => expect(r, `${padding} text ${b}`).toEqual(Array.from(gold.subarray(b * dSae, (b + 1) * dSae))));
      } finally {
        await engine.close();
      }
    });
  }

  it('unbatched: each text alone gives the golden firing rates', async () => {
    const engine = await ForwardEngine.open({ modelDir, layer: 3, sae, cacheDir, threads: 1 });
    try {
      const gold = goldens.f32('unbatched.sae.L3.firing_rates').data;
      for (let b = 0; b < S; b++) expect(rates(await engine.runTopK([sequences[b]]))[0], `text ${b}`).toEqual(Array.from(gold.subarray(b * dSae, (b + 1) * dSae)));
    } finally {
      await engine.close();
    }
  });
});

describe('Qwen3.5 TypeScript reference forward vs the Hugging Face goldens', () => {
  it('matches resid_post at every layer, right- and left-padded, on real tokens (within 1e-5)', () => {
    const goldens = new Goldens(GOLD);
    const ckpt = Checkpoint.open(modelDir);
    try {
      for (const padding of ['right', 'left'] as const) {
        const batch = padBatch(sequences, padding, PAD);
        expect(batch.ids).toEqual(goldens.rows(`${padding}.input_ids`));
        const out = referenceForward(ckpt, ckpt.arch, batch);
        const mask = batch.mask.flat();
        for (let l = 0; l < L; l++) expect(maxErrOnRealTokens(out.residPost[l], goldens.f32(`${padding}.resid_post.${l}`).data, mask), `${padding} layer ${l}`).toBeLessThan(1e-5);
      }
    } finally {
      ckpt.close();
      goldens.close();
    }
  });
});
