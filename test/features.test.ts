import { describe, expect, it } from 'vitest';
import { FeatureAccumulator, denseRates, textFeatures } from '../src/engine/features.js';
import { TopKBatch } from '../src/engine/types.js';

/** A batch from per-token lists of [feature, value] (k = 2; a null token is a pad). */
function batchOf(rows: ([number, number][] | null)[][]): TopKBatch {
  const B = rows.length;
  const T = Math.max(...rows.map((r) => r.length));
  const k = 2;
  const values = new Float32Array(B * T * k);
  const indices = new Int32Array(B * T * k);
  const mask = new Uint8Array(B * T);
  rows.forEach((row, b) =>
    row.forEach((tok, t) => {
      if (tok === null) {
        // pads carry garbage codes that must be ignored
        values.set([9, 9], (b * T + t) * k);
        indices.set([0, 1], (b * T + t) * k);
        return;
      }
      mask[b * T + t] = 1;
      tok.forEach(([f, v], j) => {
        indices[(b * T + t) * k + j] = f;
        values[(b * T + t) * k + j] = v;
      });
    }),
  );
  return { batch: B, seqLen: T, k, values, indices, mask };
}

describe('firing rates per text', () => {
  // text 0: 3 real tokens then a pad; text 1: left-padded, 2 real tokens
  const batch = batchOf([
    [[[5, 1.5], [2, 0.5]], [[2, 2.0], [7, 0]], [[5, 0.25], [3, 1]], null],
    [null, null, [[7, 3], [2, 1]], [[7, 1], [1, 0]]],
  ]);

  it('counts real tokens only, a feature firing when its kept value is > 0 (kept zeros do not fire)', () => {
    const [a, b] = textFeatures(batch);
    expect(a.nTokens).toBe(3);
    expect(Array.from(a.ids)).toEqual([2, 3, 5]); // 7 was kept with value 0 on token 1: not fired
    expect(Array.from(a.counts)).toEqual([2, 1, 2]);
    expect(Array.from(a.rates)).toEqual([2 / 3, 1 / 3, 2 / 3].map(Math.fround));
    expect(Array.from(a.maxActs)).toEqual([2, 1, 1.5]);
    expect(b.nTokens).toBe(2);
    expect(Array.from(b.ids)).toEqual([2, 7]); // pads' features 0 and 1 are ignored; 1 kept at 0 too
    expect(Array.from(b.rates)).toEqual([0.5, 1]);
    expect(Array.from(b.maxActs)).toEqual([1, 3]);
  });

  it('densifies to [d_sae]', () => {
    expect(Array.from(denseRates(textFeatures(batch)[1], 8))).toEqual([0, 0, 0.5, 0, 0, 0, 0, 1]);
    expect(() => denseRates(textFeatures(batch)[1], 5)).toThrow(/feature 7 is outside d_sae = 5/);
  });

  it('gives an empty text no features and no NaN', () => {
    const empty = textFeatures(batchOf([[null, null]]))[0];
    expect(empty).toMatchObject({ nTokens: 0 });
    expect(empty.ids.length).toBe(0);
  });
});

describe('FeatureAccumulator over overlapping windows', () => {
  // one text of 6 tokens, token i fires feature i % 3 with value i + 1
  const tokens: [number, number][][] = Array.from({ length: 6 }, (_, i) => [[i % 3, i + 1], [9, 0]]);
  const whole = textFeatures(batchOf([tokens]))[0];

  it('counts each token once when windows overlap: the later window skips the shared tokens', () => {
    // windows [0, 4) and [2, 6), sharing tokens 2 and 3; window 1 is left-padded in its batch
    const windows = batchOf([tokens.slice(0, 4), [null, null, ...tokens.slice(2, 6)]]);
    const acc = new FeatureAccumulator().addRow(windows, 0).addRow(windows, 1, { from: 2 });
    expect(acc.result()).toEqual(whole);
    // without the skip the shared tokens would count twice
    const twice = new FeatureAccumulator().addRow(windows, 0).addRow(windows, 1).result();
    expect(twice.nTokens).toBe(8);
  });

  it('can take any [from, to) range of real tokens', () => {
    const r = new FeatureAccumulator().addRow(batchOf([tokens]), 0, { from: 1, to: 3 }).result();
    expect(r.nTokens).toBe(2);
    expect(Array.from(r.ids)).toEqual([1, 2]);
    expect(() => new FeatureAccumulator().addRow(batchOf([tokens]), 0, { from: 3, to: 1 })).toThrow(/token range \[3, 1\)/);
  });

  it('refuses rows outside the batch and inconsistent arrays', () => {
    const b = batchOf([tokens]);
    expect(() => new FeatureAccumulator().addRow(b, 1)).toThrow(/row 1 is outside the batch of 1/);
    expect(() => new FeatureAccumulator().addRow({ ...b, mask: new Uint8Array(3) }, 0)).toThrow(/mismatched arrays/);
  });
});
