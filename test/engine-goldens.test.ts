/**
 * The ONNX forward engine reproduces Hugging Face's Qwen3 residual stream (../shared/goldens):
 * every layer, right-padded, left-padded and one-by-one, single-file and sharded checkpoints.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { padBatch } from '../src/engine/padding.js';
import { goldenCheckpointDir, goldenShardedCheckpointDir, Goldens, readManifest } from './helpers/goldens.js';

const TOL = 1e-4;
const cacheDir = mkdtempSync(join(tmpdir(), 'toxscope-engine-goldens-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

/** Largest |got - golden| over real tokens; got [B, T, D], golden [B, T, D] starting at `goldenOffset`. */
function maxErrOnRealTokens(got: Float32Array, golden: Float32Array, goldenOffset: number, mask: ArrayLike<number | bigint>, D: number): number {
  let worst = 0;
  for (let bt = 0; bt < mask.length; bt++) {
    if (Number(mask[bt]) !== 1) continue;
    for (let i = 0; i < D; i++) worst = Math.max(worst, Math.abs(got[bt * D + i] - golden[goldenOffset + bt * D + i]));
  }
  return worst;
}

describe('padding', () => {
  it('pads right or left with the pad id and marks real tokens in the mask', () => {
    const r = padBatch([[5, 6, 7], [8]], 'right', 99);
    expect(Array.from(r.ids, Number)).toEqual([5, 6, 7, 8, 99, 99]);
    expect(Array.from(r.mask, Number)).toEqual([1, 1, 1, 1, 0, 0]);
    const l = padBatch([[5, 6, 7], [8]], 'left', 99);
    expect(Array.from(l.ids, Number)).toEqual([5, 6, 7, 99, 99, 8]);
    expect(Array.from(l.mask, Number)).toEqual([1, 1, 1, 0, 0, 1]);
    expect([l.batch, l.seqLen, l.lengths]).toEqual([2, 3, [3, 1]]);
  });

  it('refuses empty batches, empty sequences and non-integer ids', () => {
    expect(() => padBatch([], 'right')).toThrow(/at least one sequence/);
    expect(() => padBatch([[1], []], 'right')).toThrow(/sequence 1 is empty/);
    expect(() => padBatch([[1, 2.5]], 'right')).toThrow(/position 1: token id 2.5/);
    expect(() => padBatch([[1]], 'middle' as never)).toThrow(/padding must be/);
  });
});

for (const [label, modelDir] of [['single-file', goldenCheckpointDir], ['sharded', goldenShardedCheckpointDir]] as const) {
  describe(`engine vs the Hugging Face goldens (${label} checkpoint)`, () => {
    const goldens = new Goldens();
    const manifest = readManifest();
    afterAll(() => goldens.close());
    const layers = [0, 1, 2, 3];

    for (const layer of layers) {
      it(`matches resid_post after layer ${layer}: right-padded, left-padded and one by one`, async () => {
        const engine = await ForwardEngine.open({ modelDir, layer, cacheDir, threads: 1 });
        try {
          const D = engine.info.dModel;
          for (const padding of ['right', 'left'] as const) {
            const out = await engine.runResidual(manifest.sequences, padding);
            const golden = goldens.f32(`${padding}.resid_post`); //                               [L, B, T, D]
            const [, B, T] = golden.shape;
            expect([out.batch, out.seqLen, out.dModel]).toEqual([B, T, D]);
            // Our padding is the goldens' padding.
            expect(Array.from(out.mask)).toEqual(goldens.ints(`${padding}.attention_mask`).data);
            const err = maxErrOnRealTokens(out.resid, golden.data, layer * B * T * D, out.mask, D);
            expect(err, `${padding} layer ${layer}`).toBeLessThan(TOL);
            expect(out.resid.every(Number.isFinite), 'pad positions stay finite').toBe(true);
          }
          for (let i = 0; i < manifest.sequences.length; i++) {
            const out = await engine.runResidual([manifest.sequences[i]]);
            const golden = goldens.f32(`unbatched.${i}.resid_post`); //                           [L, T, D]
            const T = golden.shape[1];
            expect(maxErrOnRealTokens(out.resid, golden.data, layer * T * D, out.mask, D), `sequence ${i} layer ${layer}`).toBeLessThan(TOL);
          }
        } finally {
          await engine.close();
        }
      });
    }
  });
}

describe('engine vs the Qwen-Scope goldens (sequences up to 97 tokens, layer 2)', () => {
  it('matches resid_post.2 right-padded, left-padded and one by one', async () => {
    const goldens = new Goldens('qscope-goldens.safetensors');
    const manifest = readManifest('qscope-manifest.json');
    const engine = await ForwardEngine.open({ modelDir: goldenCheckpointDir, layer: 2, cacheDir, threads: 1 });
    try {
      const D = engine.info.dModel;
      for (const padding of ['right', 'left'] as const) {
        const out = await engine.runResidual(manifest.sequences, padding);
        expect(out.seqLen).toBe(97);
        expect(maxErrOnRealTokens(out.resid, goldens.f32(`${padding}.resid_post.2`).data, 0, out.mask, D), padding).toBeLessThan(TOL);
      }
      for (let i = 0; i < manifest.sequences.length; i++) {
        const out = await engine.runResidual([manifest.sequences[i]]);
        expect(maxErrOnRealTokens(out.resid, goldens.f32(`unbatched.${i}.resid_post.2`).data, 0, out.mask, D), `sequence ${i}`).toBeLessThan(TOL);
      }
    } finally {
      await engine.close();
      goldens.close();
    }
  });
});
