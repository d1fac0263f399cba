/**
 * The ONNX engine against the plain TypeScript reference (src/model/reference-forward.ts) on shapes the
 * goldens do not cover: other head counts and GQA ratios, head_dim != hidden / heads, untied embeddings,
 * small odd vocabularies, f32 and bf16, sharded files, the last layer, left padding, hundreds of tokens.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { Checkpoint } from '../src/model/checkpoint.js';
import { padBatch, Padding, referenceForward } from '../src/model/reference-forward.js';
import { TinyCheckpointOptions, tinyCheckpoint } from './helpers/tiny-checkpoint.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'toxscope-evr-cache-'));
const cleanups: (() => void)[] = [() => rmSync(cacheDir, { recursive: true, force: true })];
afterAll(() => cleanups.reverse().forEach((c) => c()));

/** Seeded token ids in [0, vocab). */
function tokens(n: number, vocab: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % vocab;
  });
}

/** Largest |engine - reference| over real tokens of the layer's residual [B, T, D]. */
async function compare(opts: TinyCheckpointOptions, layer: number | 'last', rows: number[][], padding: Padding): Promise<number> {
  const tiny = tinyCheckpoint(opts);
  cleanups.push(tiny.cleanup);
  const L = layer === 'last' ? tiny.config.numLayers - 1 : layer;
  const engine = await ForwardEngine.open({ modelDir: tiny.dir, layer: L, cacheDir, threads: 1 });
  try {
    const got = await engine.runResidual(rows, padding);
    const ckpt = Checkpoint.open(tiny.dir);
    const batch = padBatch(rows, padding, 0);
    const want = referenceForward(ckpt, ckpt.arch, batch, L);
    ckpt.close();
    const { batch: B, seqLen: T, dModel: D } = want;
    expect([got.batch, got.seqLen, got.dModel]).toEqual([B, T, D]);
    expect(Array.from(got.mask)).toEqual(batch.mask.flat());
    const ref = want.residPost[L];
    let worst = 0;
    let scale = 0; // the comparison must be between non-trivial values
    for (const v of ref) scale = Math.max(scale, Math.abs(v));
    expect(scale).toBeGreaterThan(0.1);
    for (let b = 0; b < B; b++)
      for (let t = 0; t < T; t++) {
        if (!batch.mask[b][t]) continue;
        for (let i = 0; i < D; i++) {
          const o = (b * T + t) * D + i;
          worst = Math.max(worst, Math.abs(got.resid[o] - ref[o]));
        }
      }
    return worst;
  } finally {
    await engine.close();
  }
}

const TOL = 1e-4;

describe('ONNX engine vs the TypeScript reference forward pass', () => {
  it('6 heads over 3 KV heads, head_dim 12 != 40/6, untied, vocab 301, f32, last layer, right and left padding', async () => {
    const opts: TinyCheckpointOptions = { hiddenSize: 40, intermediateSize: 56, numHeads: 6, numKvHeads: 3, headDim: 12, vocabSize: 301, numLayers: 3, tieWordEmbeddings: false, dtype: 'F32', seed: 11 };
    const rows = [tokens(9, 301, 1), tokens(4, 301, 2), tokens(1, 301, 3), [0, 300, 0, 300]];
    for (const padding of ['right', 'left'] as const) expect(await compare(opts, 'last', rows, padding), padding).toBeLessThan(TOL);
  });

  it('multi-query attention (8 heads, 1 KV head), head_dim 16 with heads x head_dim > hidden, bf16 shards, a middle layer', async () => {
    const opts: TinyCheckpointOptions = { hiddenSize: 48, intermediateSize: 96, numHeads: 8, numKvHeads: 1, headDim: 16, vocabSize: 1000, numLayers: 4, dtype: 'BF16', shards: 3, ropeTheta: 10000, seed: 12 };
    const rows = [tokens(12, 1000, 4), tokens(7, 1000, 5)];
    expect(await compare(opts, 1, rows, 'left')).toBeLessThan(TOL);
  });

  it('no grouping (4 heads, 4 KV heads), head_dim 32, layer 0 of 1', async () => {
    const opts: TinyCheckpointOptions = { hiddenSize: 32, intermediateSize: 64, numHeads: 4, numKvHeads: 4, headDim: 32, vocabSize: 77, numLayers: 1, seed: 13 };
    expect(await compare(opts, 0, [tokens(20, 77, 6), tokens(3, 77, 7)], 'right')).toBeLessThan(TOL);
  });

  it('sequences of several hundred tokens, left-padded, at the last layer', async () => {
    const opts: TinyCheckpointOptions = { hiddenSize: 32, intermediateSize: 48, numHeads: 4, numKvHeads: 2, headDim: 8, vocabSize: 4096, numLayers: 2, seed: 14 };
    const rows = [tokens(400, 4096, 8), tokens(257, 4096, 9), tokens(5, 4096, 10)];
    expect(await compare(opts, 'last', rows, 'left')).toBeLessThan(TOL);
    expect(await compare(opts, 'last', rows, 'right')).toBeLessThan(TOL);
  });
});
