/**
 * The ONNX engine against the plain TypeScript reference forward pass (src/model/reference-forward.ts) on
 * shapes the goldens do not cover: other head counts and head_dim (H*hd != D), multi-query and multi-head
 * attention, untied embeddings, small vocabularies, F32 and sharded checkpoints, the last layer, and
 * sequences of several hundred tokens, right- and left-padded.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { Checkpoint } from '../src/model/checkpoint.js';
import { padBatch, referenceForward } from '../src/model/reference-forward.js';
import { TinyCheckpointOptions, tinyCheckpoint } from './helpers/tiny-checkpoint.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'toxscope-graph-reference-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

function randomIds(n: number, vocab: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => (s = (s * 1103515245 + 12345) % 2147483648) % vocab);
}

const cases: { name: string; ckpt: TinyCheckpointOptions; layer: number; lengths: number[] }[] = [
  {
    name: 'H=6 KV=2 hd=12 (H*hd != D), untied embeddings, vocab 1000, F32, last layer, 300 tokens',
    ckpt: { hiddenSize: 40, intermediateSize: 72, numLayers: 3, numHeads: 6, numKvHeads: 2, headDim: 12, vocabSize: 1000, tieWordEmbeddings: false, dtype: 'F32', seed: 21 },
    layer: 2,
    lengths: [300, 17, 1],
  },
  {
    name: 'multi-head (H=KV=4, hd=16), bf16 sharded, vocab 777, theta 1e4, middle layer',
    ckpt: { hiddenSize: 48, intermediateSize: 96, numLayers: 3, numHeads: 4, numKvHeads: 4, headDim: 16, vocabSize: 777, ropeTheta: 1e4, shards: 3, seed: 22 },
    layer: 1,
    lengths: [40, 64, 5],
  },
  {
    name: 'multi-query (H=8, KV=1, hd=8), eps 1e-5, first layer',
    ckpt: { hiddenSize: 24, intermediateSize: 40, numLayers: 2, numHeads: 8, numKvHeads: 1, headDim: 8, vocabSize: 333, rmsNormEps: 1e-5, seed: 23 },
    layer: 0,
    lengths: [9, 33],
  },
];

describe('engine vs the TypeScript reference forward pass', () => {
  for (const c of cases) {
    it(`matches on real tokens, right- and left-padded: ${c.name}`, async () => {
      const tiny = tinyCheckpoint(c.ckpt);
      const ckpt = Checkpoint.open(tiny.dir);
      const engine = await ForwardEngine.open({ modelDir: tiny.dir, layer: c.layer, cacheDir, threads: 1, padId: 0 });
      try {
        const seqs = c.lengths.map((n, i) => randomIds(n, tiny.config.vocabSize, 100 + i));
        const D = tiny.config.hiddenSize;
        for (const padding of ['right', 'left'] as const) {
          const ours = await engine.runResidual(seqs, padding);
          const ref = referenceForward(ckpt, ckpt.arch, padBatch(seqs, padding, 0), c.layer).residPost[c.layer]; // [B, T, D]
          expect(ref).toHaveLength(ours.resid.length);
          let worst = 0, real = 0;
          for (let bt = 0; bt < ours.batch * ours.seqLen; bt++) {
            if (!ours.mask[bt]) continue;
            real++;
            for (let i = 0; i < D; i++) worst = Math.max(worst, Math.abs(ours.resid[bt * D + i] - ref[bt * D + i]));
          }
          expect(real).toBe(c.lengths.reduce((a, b) => a + b, 0));
          expect(worst, padding).toBeLessThan(1e-4);
        }
      } finally {
        await engine.close();
        ckpt.close();
        tiny.cleanup();
      }
    });
  }
});
