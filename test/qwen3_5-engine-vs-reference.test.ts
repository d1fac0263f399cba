/**
 * The Qwen3.5 engine against the TypeScript reference forward pass on shapes the goldens do not have: 8 layers
 * with an explicit layer_types (not every 4th), sequences spanning 64-token chunks (64, 128, 130 tokens), twice as
 * many DeltaNet value heads as key heads (as Qwen3.5-9B/27B), untied embeddings (lm_head in the file), and
 * sharded files. Also: only the tensors up to the target layer are ever needed.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { Checkpoint } from '../src/model/checkpoint.js';
import { padBatch, referenceForward } from '../src/model/reference-forward.js';
import { SafetensorsFile, type TensorToWrite } from '../src/model/safetensors.js';
import { seededRandom } from '../src/util/random.js';
import { type TinyQwen35, tinyQwen35Checkpoint, writeShards } from './helpers/tiny-qwen35.js';

const LAYER_TYPES = ['linear_attention', 'full_attention', 'linear_attention', 'linear_attention', 'linear_attention', 'full_attention', 'linear_attention', 'linear_attention'] as const;
const rand = seededRandom(11);
const seq = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * 512));
const SEQS = [seq(64), seq(128), seq(130), seq(3), seq(65)];

const tmp = mkdtempSync(join(tmpdir(), 'toxscope-qwen35-ref-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Largest |a - b| over real tokens, both [B, T, D]. */
function maxErr(a: Float32Array, b: Float32Array, mask: ArrayLike<number>, D: number): number {
  let worst = 0;
  for (let bt = 0; bt < mask.length; bt++) if (Number(mask[bt])) for (let i = 0; i < D; i++) worst = Math.max(worst, Math.abs(a[bt * D + i] - b[bt * D + i]));
  return worst;
}

describe('Qwen3.5 engine vs the reference: 8 layers, Hv = 2 Hk, untied, sharded, sequences over 64-token chunks', () => {
  let ck: TinyQwen35;
  beforeAll(() => {
    ck = tinyQwen35Checkpoint({ numLayers: 8, layerTypes: [...LAYER_TYPES], keyHeads: 2, valueHeads: 4, tieWordEmbeddings: false, shards: 3, seed: 8 });
  });
  afterAll(() => ck.cleanup());

  for (const layer of [2, 5, 7]) {
    it(`layer ${layer}: right-padded, left-padded and one by one within 1e-4 on real tokens`, async () => {
      const ckpt = Checkpoint.open(ck.dir);
      const engine = await ForwardEngine.open({ modelDir: ck.dir, layer, cacheDir: join(tmp, 'cache'), threads: 1 });
      try {
        expect(ckpt.has('lm_head.weight'), 'the checkpoint is untied').toBe(true);
        const D = ck.config.hiddenSize;
        for (const padding of ['right', 'left'] as const) {
          const out = await engine.runResidual(SEQS, padding);
          const ref = referenceForward(ckpt, ckpt.arch, padBatch(SEQS, padding, 1), layer);
          expect(maxErr(out.resid, ref.residPost[layer], out.mask, D), `${padding} layer ${layer}`).toBeLessThan(1e-4);
        }
        for (const s of [SEQS[2], SEQS[3]]) {
          const out = await engine.runResidual([s]);
          const ref = referenceForward(ckpt, ckpt.arch, { ids: [s] }, layer);
          expect(maxErr(out.resid, ref.residPost[layer], out.mask, D), `alone, ${s.length} tokens`).toBeLessThan(1e-4);
        }
      } finally {
        await engine.close();
        ckpt.close();
      }
    });
  }

  it('left-padded rows equal their unbatched run: pads add nothing to the conv or the DeltaNet state', async () => {
    const engine = await ForwardEngine.open({ modelDir: ck.dir, layer: 6, cacheDir: join(tmp, 'cache'), threads: 1 });
    try {
      const D = ck.config.hiddenSize;
      const batch = await engine.runResidual(SEQS, 'left');
      for (let b = 0; b < SEQS.length; b++) {
        const alone = await engine.runResidual([SEQS[b]]);
        const n = SEQS[b].length;
        const row = batch.resid.subarray((b * batch.seqLen + batch.seqLen - n) * D, (b + 1) * batch.seqLen * D);
        expect(maxErr(row, alone.resid, new Uint8Array(n).fill(1), D), `row ${b}`).toBeLessThan(2e-5);
      }
    } finally {
      await engine.close();
    }
  });

  it('needs nothing past the target layer: a copy holding only the layers 0..3 text tensors runs to layer 3 and names what layer 4 lacks', async () => {
    const ckpt = Checkpoint.open(ck.dir);
    const dir = join(tmp, 'truncated');
    const tensors: Record<string, TensorToWrite> = {};
    try {
      for (const name of ckpt.arch.requiredTensors(3).keys()) {
        const info = ckpt.info(name);
        tensors[name] = { dtype: info.dtype, shape: info.shape, data: ckpt.readRaw(name) };
      }
      expect([...ckpt.arch.requiredTensors(7).keys()].some((n) => /lm_head|visual|mtp|language_model\.norm/.test(n)), 'never lm_head, vision, MTP or the final norm').toBe(false);
    } finally {
      ckpt.close();
    }
    mkdirSync(dir);
    writeShards(dir, tensors, 1);
    copyFileSync(join(ck.dir, 'config.json'), join(dir, 'config.json'));
    const engine = await ForwardEngine.open({ modelDir: dir, layer: 3, cacheDir: join(tmp, 'cache2'), threads: 1 });
    await engine.close();
    await expect(ForwardEngine.open({ modelDir: dir, layer: 4, cacheDir: join(tmp, 'cache2'), threads: 1 })).rejects.toThrow(/missing \d+ tensor\(s\) needed up to layer 4: model\.language_model\.layers\.4\.input_layernorm\.weight/);
    const st = SafetensorsFile.open(join(dir, 'model.safetensors'));
    expect(st.tensors.has('lm_head.weight')).toBe(false);
    st.close();
  });
});

describe('Qwen3.5 engine vs the reference: three value heads per key head (as Qwen3.5-27B: 16 key, 48 value heads)', () => {
  it('matches on every real token, right- and left-padded', async () => {
    const ck = tinyQwen35Checkpoint({ numLayers: 4, keyHeads: 2, valueHeads: 6, keyHeadDim: 8, valueHeadDim: 4, seed: 27 });
    const ckpt = Checkpoint.open(ck.dir);
    const engine = await ForwardEngine.open({ modelDir: ck.dir, layer: 3, cacheDir: join(tmp, 'cache3'), threads: 1 });
    try {
      for (const padding of ['right', 'left'] as const) {
        const seqs = [SEQS[1], SEQS[3], SEQS[4]];
        const out = await engine.runResidual(seqs, padding);
        const ref = referenceForward(ckpt, ckpt.arch, padBatch(seqs, padding, 1), 3);
        expect(maxErr(out.resid, ref.residPost[3], out.mask, ck.config.hiddenSize), padding).toBeLessThan(1e-4);
      }
    } finally {
      await engine.close();
      ckpt.close();
      ck.cleanup();
    }
  });
});
