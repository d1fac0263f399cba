import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../src/model/checkpoint.js';
import { padBatch, positionsFor, referenceForward, ReferenceOutput } from '../src/model/reference-forward.js';
import { goldenCheckpointDir, goldenShardedCheckpointDir, Goldens, readManifest } from './helpers/goldens.js';
import { tinyCheckpoint } from './helpers/tiny-checkpoint.js';

const PAD = 151643;

/** Largest |a - b| over real tokens of layer l: got [B, T, D] vs golden resid_post [L, B, T, D]. */
function maxErrOnRealTokens(got: Float32Array, golden: Float32Array, l: number, mask: number[][], D: number): number {
  const B = mask.length, T = mask[0].length;
  let worst = 0;
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++) {
      if (!mask[b][t]) continue;
      for (let i = 0; i < D; i++) {
        const off = (b * T + t) * D + i;
        worst = Math.max(worst, Math.abs(got[off] - golden[l * B * T * D + off]));
      }
    }
  return worst;
}

describe('reference forward pass vs the Hugging Face goldens', () => {
  const goldens = new Goldens();
  const manifest = readManifest();
  const ckpt = Checkpoint.open(goldenCheckpointDir);
  const L = ckpt.config.numLayers;
  const D = ckpt.config.hiddenSize;
  afterAll(() => {
    goldens.close();
    ckpt.close();
  });

  for (const padding of ['right', 'left'] as const) {
    it(`matches resid_post at every layer for the ${padding}-padded batch on real tokens`, () => {
      const ids = goldens.rows(`${padding}.input_ids`);
      const mask = goldens.rows(`${padding}.attention_mask`);
      // The batch we build ourselves is the batch the goldens were computed on.
      const built = padBatch(manifest.sequences, padding, PAD);
      expect(built.ids).toEqual(ids);
      expect(built.mask).toEqual(mask);
      const out = referenceForward(ckpt, ckpt.arch, built);
      expect(out.residPost).toHaveLength(L);
      const golden = goldens.f32(`${padding}.resid_post`);
      expect(golden.shape).toEqual([L, out.batch, out.seqLen, D]);
      for (let l = 0; l < L; l++) expect(maxErrOnRealTokens(out.residPost[l], golden.data, l, mask, D), `layer ${l}`).toBeLessThan(1e-4);
    });
  }

  it('uses the goldens\' left-padding positions (cumsum(mask) - 1) on real tokens', () => {
    const mask = goldens.rows('left.attention_mask');
    const golden = goldens.rows('left.position_ids');
    const ours = positionsFor(mask, 'left');
    for (let b = 0; b < mask.length; b++)
      for (let t = 0; t < mask[b].length; t++) if (mask[b][t]) expect(ours[b][t]).toBe(golden[b][t]);
  });

  it('matches every unbatched sequence at every layer, from the single-file and the sharded checkpoint', () => {
    const sharded = Checkpoint.open(goldenShardedCheckpointDir);
    try {
      manifest.sequences.forEach((seq, i) => {
        const golden = goldens.f32(`unbatched.${i}.resid_post`); // [L, T, D]
        for (const source of [ckpt, sharded]) {
          const out = referenceForward(source, ckpt.arch, { ids: [seq] });
          const ones = [seq.map(() => 1)];
          for (let l = 0; l < L; l++) expect(maxErrOnRealTokens(out.residPost[l], golden.data, l, ones, D), `sequence ${i} layer ${l}`).toBeLessThan(1e-4);
        }
      });
    } finally {
      sharded.close();
    }
  });

  it('stops at the requested layer', () => {
    const out = referenceForward(ckpt, ckpt.arch, { ids: [[1, 2, 3]] }, 1);
    expect(out.residPost).toHaveLength(2);
    expect(() => referenceForward(ckpt, ckpt.arch, { ids: [[1]] }, L)).toThrow(/layer 4 is out of range 0\.\.3/);
  });

  it('refuses token ids outside the vocabulary', () => {
    expect(() => referenceForward(ckpt, ckpt.arch, { ids: [[151936]] })).toThrow(/token id 151936 is outside the vocabulary/);
  });
});

describe('reference forward pass: properties on tiny random checkpoints', () => {
  // head_dim 12 != hidden 40 / heads 6, 6 query heads over 3 KV heads, odd vocab, untied, f32.
  let tiny: ReturnType<typeof tinyCheckpoint>;
  let ckpt: Checkpoint;
  beforeAll(() => {
    tiny = tinyCheckpoint({ hiddenSize: 40, numHeads: 6, numKvHeads: 3, headDim: 12, vocabSize: 301, numLayers: 3, tieWordEmbeddings: false, dtype: 'F32', seed: 5 });
    ckpt = Checkpoint.open(tiny.dir);
  });
  afterAll(() => {
    ckpt.close();
    tiny.cleanup();
  });

  const rows = [[5, 17, 300, 2, 9, 41, 0], [7, 7, 7], [250]];
  const alone = (): ReferenceOutput[] => rows.map((r) => referenceForward(ckpt, ckpt.arch, { ids: [r] }));

  /** |batched row b - alone| over its real tokens, every layer. */
  function batchedVsAlone(padding: 'right' | 'left'): number {
    const batch = padBatch(rows, padding, 0);
    const out = referenceForward(ckpt, ckpt.arch, batch);
    const single = alone();
    const { seqLen: T, dModel: D } = out;
    let worst = 0;
    rows.forEach((r, b) => {
      const shift = padding === 'left' ? T - r.length : 0;
      for (let l = 0; l < ckpt.config.numLayers; l++)
        for (let t = 0; t < r.length; t++)
          for (let i = 0; i < D; i++)
            worst = Math.max(worst, Math.abs(out.residPost[l][((b * T) + t + shift) * D + i] - single[b].residPost[l][t * D + i]));
    });
    return worst;
  }

  it('gives each row of a right-padded batch the values it has alone', () => {
    expect(batchedVsAlone('right')).toBeLessThan(1e-6);
  });

  it('gives each row of a left-padded batch the values it has alone', () => {
    expect(batchedVsAlone('left')).toBeLessThan(1e-6);
  });

  it('is causal: appending tokens leaves earlier positions unchanged', () => {
    const short = referenceForward(ckpt, ckpt.arch, { ids: [[3, 1, 4]] });
    const long = referenceForward(ckpt, ckpt.arch, { ids: [[3, 1, 4, 1, 5, 9]] });
    const D = ckpt.config.hiddenSize;
    for (let l = 0; l < ckpt.config.numLayers; l++) expect(Array.from(long.residPost[l].subarray(0, 3 * D))).toEqual(Array.from(short.residPost[l]));
  });

  it('depends on relative position only (RoPE)', () => {
    const D = ckpt.config.hiddenSize;
    const run = (positions: number[]) => referenceForward(ckpt, ckpt.arch, { ids: [[8, 9]], positions: [positions] }).residPost[2].subarray(D);
    const maxDiff = (a: Float32Array, b: Float32Array) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));
    // A wider gap between the two tokens changes the second token's residual...
    expect(maxDiff(run([0, 1]), run([0, 5]))).toBeGreaterThan(1e-4);
    // ...while shifting both positions by the same amount does not.
    expect(maxDiff(run([0, 1]), run([100, 101]))).toBeLessThan(1e-5);
  });
});
