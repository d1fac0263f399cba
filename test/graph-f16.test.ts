/**
 * The float16-weights graph that CUDA gets: same maths in half precision for the projections (activations cast
 * to f16 at each MatMul/Gemm and back), checked here on the CPU provider, which runs float16 MatMuls too.
 * And the engine's choice: f16 only where CUDA really runs; a CUDA request that falls back uses the f32 graph.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { padBatch } from '../src/engine/padding.js';
import { Checkpoint } from '../src/model/checkpoint.js';
import { ensureGraph } from '../src/model/graph-cache.js';
import { OrtSession } from '../src/runtime/session.js';
import { Rng } from '../src/util/random.js';
import type { TopKSae } from '../src/model/sae/types.js';
import { tinyCheckpoint } from './helpers/tiny-checkpoint.js';
import { tinyMoeCheckpoint } from './helpers/tiny-moe-checkpoint.js';

const work = mkdtempSync(join(tmpdir(), 'toxscope-f16-'));
const tiny = tinyCheckpoint({ hiddenSize: 64, intermediateSize: 128, numLayers: 3, numHeads: 4, numKvHeads: 2, headDim: 16, vocabSize: 1000, seed: 5 });
const ckptDir = tiny.dir;
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  tiny.cleanup();
});
const rows = [[1, 5, 9, 200, 999, 3, 4], [7, 8, 9]];

function randomSae(dModel: number): TopKSae {
  const rng = new Rng(3);
  return { format: 'qwen-scope', source: 'random', dModel, dSae: 256, k: 8, wEnc: rng.normalArray(256 * dModel, 0.2), bEnc: new Float32Array(256), inputBias: null, wDec: null, bDec: null };
}

async function runGraph(modelPath: string, outputs: string[]) {
  const s = await OrtSession.create(modelPath, { provider: 'cpu', threads: 1 });
  try {
    const p = padBatch(rows, 'right');
    const dims = [p.batch, p.seqLen];
    return await s.run({ input_ids: { type: 'int64', data: p.ids, dims }, attention_mask: { type: 'int64', data: p.mask, dims } }, outputs);
  } finally {
    await s.close();
  }
}

describe('float16 weights', () => {
  it('give the float32 residual stream to within half-precision error, and the same top SAE features', async () => {
    const ckpt = Checkpoint.open(ckptDir);
    const sae = randomSae(64);
    const g32 = ensureGraph(join(work, 'cache'), ckpt, 2, sae, 'f32');
    const g16 = ensureGraph(join(work, 'cache'), ckpt, 2, sae, 'f16');
    ckpt.close();
    expect(g16.key).not.toBe(g32.key); // cached apart
    const a = await runGraph(g32.modelPath, ['resid_post', 'topk_values', 'topk_indices']);
    const b = await runGraph(g16.modelPath, ['resid_post', 'topk_values', 'topk_indices']);
    const r32 = a.resid_post.data as Float32Array, r16 = b.resid_post.data as Float32Array;
    const p = padBatch(rows, 'right');
    let maxErr = 0, maxAbs = 0;
    for (let i = 0; i < r32.length; i++) {
      if (p.mask[Math.floor(i / 64)] !== 1n) continue;
      maxErr = Math.max(maxErr, Math.abs(r32[i] - r16[i]));
      maxAbs = Math.max(maxAbs, Math.abs(r32[i]));
    }
    expect(maxErr).toBeGreaterThan(0); // really a different precision
    expect(maxErr / maxAbs).toBeLessThan(1e-2);
    // the strongest feature of every real token is the same
    const i32 = a.topk_indices.data as BigInt64Array, i16 = b.topk_indices.data as BigInt64Array;
    for (let t = 0; t < p.mask.length; t++) if (p.mask[t] === 1n) expect(i16[t * 8]).toBe(i32[t * 8]);
  });

  it('run the qwen3_moe MoE block too (float16 experts; float32 router logits rounded to float16 for the kernel)', async () => {
    const moe = tinyMoeCheckpoint({ hiddenSize: 64, numLayers: 2, vocabSize: 1000, numExperts: 8, topK: 2, expertWidth: 32, headDim: 16, seed: 9 });
    try {
      const ckpt = Checkpoint.open(moe.dir);
      const g32 = ensureGraph(join(work, 'cache-moe'), ckpt, 1, null, 'f32');
      const g16 = ensureGraph(join(work, 'cache-moe'), ckpt, 1, null, 'f16');
      ckpt.close();
      const r32 = (await runGraph(g32.modelPath, ['resid_post'])).resid_post.data as Float32Array;
      const r16 = (await runGraph(g16.modelPath, ['resid_post'])).resid_post.data as Float32Array;
      const p = padBatch(rows, 'right');
      let maxErr = 0, maxAbs = 0;
      for (let i = 0; i < r32.length; i++) {
        if (p.mask[Math.floor(i / 64)] !== 1n) continue;
        maxErr = Math.max(maxErr, Math.abs(r32[i] - r16[i]));
        maxAbs = Math.max(maxAbs, Math.abs(r32[i]));
      }
      expect(maxErr).toBeGreaterThan(0);
      expect(maxErr / maxAbs).toBeLessThan(1e-2);
    } finally {
      moe.cleanup();
    }
  });

  it('are not used when CUDA is asked for but cannot load: the engine falls back to the float32 graph on the CPU', async () => {
    const warnings: string[] = [];
    const cuda = await ForwardEngine.open({ modelDir: ckptDir, layer: 2, cacheDir: join(work, 'cache2'), provider: 'cuda', threads: 1, warn: (m) => warnings.push(m) });
    const cpu = await ForwardEngine.open({ modelDir: ckptDir, layer: 2, cacheDir: join(work, 'cache2'), threads: 1 });
    try {
      if (cuda.info.provider === 'cuda') {
        expect(cuda.info.weightDtype).toBe('f16'); // a machine with a GPU
        return;
      }
      expect(cuda.info).toMatchObject({ provider: 'cpu', requestedProvider: 'cuda', weightDtype: 'f32' });
      expect(cuda.info.fallbackReason).toBeTruthy();
      expect(warnings.some((w) => /falling back to 'cpu'/.test(w))).toBe(true);
      const x = await cuda.runResidual(rows);
      const y = await cpu.runResidual(rows);
      expect(Array.from(x.resid)).toEqual(Array.from(y.resid));
    } finally {
      await cuda.close();
      await cpu.close();
    }
  });
});
