import { describe, expect, it } from 'vitest';
import { FeatureTransform } from '../src/head/features.js';
import type { TextFeatures } from '../src/head/text-features.js';

const text = (ids: number[], counts: number[], maxActs: number[], nTokens = 10): TextFeatures => ({
  nTokens, ids: Int32Array.from(ids), counts: Int32Array.from(counts),
  rates: Float32Array.from(counts, (c) => c / nTokens), maxActs: Float32Array.from(maxActs),
});

// feature 1 fires in all 4 texts, feature 2 in 2, feature 5 in 1, the rest (d = 8) never
const train = [
  text([1, 2], [1, 3], [1, 2]),
  text([1, 2, 5], [2, 1, 1], [0.5, 1, 4]),
  text([1], [1], [3]),
  text([1], [4], [1]),
];
const idf = (df: number) => Math.log((1 + 4) / (1 + df)) + 1;

describe('feature transform', () => {
  it('fits smooth idf on the training texts', () => {
    const t = FeatureTransform.fit(train, 8);
    expect(t.idf[1]).toBeCloseTo(idf(4), 6);
    expect(t.idf[2]).toBeCloseTo(idf(2), 6);
    expect(t.idf[5]).toBeCloseTo(idf(1), 6);
    expect(t.idf[0]).toBeCloseTo(idf(0), 6);
  });

  it('lays out [logCountIdf | maxAct] blocks by default, each L2-normalised', () => {
    const t = FeatureTransform.fit(train, 8);
    expect(t.parts).toEqual(['logCountIdf', 'maxAct']);
    expect(t.nCols).toBe(16);
    const row = t.row(train[1]);
    expect(Array.from(row.indices)).toEqual([1, 2, 5, 9, 10, 13]);
    const raw = [(1 + Math.log(2)) * idf(4), 1 * idf(2), 1 * idf(1)];
    const norm = Math.hypot(...raw);
    raw.forEach((v, k) => expect(row.values[k]).toBeCloseTo(v / norm, 6));
    const actNorm = Math.hypot(0.5, 1, 4);
    [0.5, 1, 4].forEach((v, k) => expect(row.values[3 + k]).toBeCloseTo(v / actNorm, 6));
    expect(t.describeColumn(10)).toEqual({ part: 'maxAct', feature: 2 });
  });

  it('can use raw firing rates without normalisation, and an optional language one-hot', () => {
    const t = FeatureTransform.fit(train, 8, { rate: true, logCountIdf: false, maxAct: false, normalize: false, language: true }, ['fr', 'en', 'fr', 'en']);
    expect(t.languages).toEqual(['en', 'fr']);
    expect(t.nCols).toBe(10);
    const fr = t.row(train[0], 'fr');
    expect(Array.from(fr.indices)).toEqual([1, 2, 9]);
    expect(Array.from(fr.values)).toEqual([Math.fround(0.1), Math.fround(0.3), 1]);
    expect(t.describeColumn(9)).toEqual({ part: 'language', feature: -1, language: 'fr' });
    expect(Array.from(t.row(train[0], 'sw').indices)).toEqual([1, 2]); // unknown language: no one-hot, still a row
    expect(Array.from(t.row(train[0]).indices)).toEqual([1, 2]);
  });

  it('builds a CSR matrix of the rows and handles texts where nothing fired', () => {
    const t = FeatureTransform.fit(train, 8);
    const X = t.matrix([...train, text([], [], [])]);
    expect(X.nRows).toBe(5);
    expect(X.nCols).toBe(16);
    expect(Array.from(X.indptr)).toEqual([0, 4, 10, 12, 14, 14]);
  });

  it('rejects malformed feature records with what is wrong', () => {
    const t = FeatureTransform.fit(train, 8);
    expect(() => t.row(text([2, 1], [1, 1], [1, 1]))).toThrow(/ascending and in \[0, 8\); got 1 after 2/);
    expect(() => t.row(text([3, 8], [1, 1], [1, 1]))).toThrow(/got 8 after 3/);
    expect(() => t.row(text([3], [0], [1]))).toThrow(/feature 3 has count 0/);
    expect(() => t.row({ ...text([3], [1], [1]), maxActs: new Float32Array(2) })).toThrow(/same length/);
    expect(() => FeatureTransform.fit(train, 8, { logCountIdf: false, maxAct: false })).toThrow(/at least one/);
  });
});
