/** Synthetic sparse data for the head's tests: planted weight vectors and SAE-like feature records. */
import type { TextFeatures } from '../src/head/text-features.js';
import { seededRandom } from '../src/util/random.js';
import { stackRows, type CsrMatrix, type SparseRow } from '../src/head/sparse.js';
import { sigmoid } from '../src/head/logistic.js';

export function gaussian(rand: () => number): number {
  const u = Math.max(rand(), 1e-12), v = rand();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** Distinct ascending ids: `count` of [0, d). */
export function sampleIds(rand: () => number, d: number, count: number): Int32Array {
  const set = new Set<number>();
  while (set.size < count) set.add(Math.floor(rand() * d));
  return Int32Array.from([...set].sort((a, b) => a - b));
}

/**
 * Rows with `nnzPerRow` random columns of values in (0, 1]; labels drawn from the logistic model
 * P(y = 1 | x) = sigmoid(x . wTrue + bTrue) (Bernoulli, so the MLE is consistent for wTrue).
 */
export function plantedLogistic(opts: { n: number; d: number; nnzPerRow: number; wTrue: Float64Array; bTrue: number; seed: number }): { X: CsrMatrix; y: Uint8Array } {
  const rand = seededRandom(opts.seed);
  const rows: SparseRow[] = [];
  const y = new Uint8Array(opts.n);
  for (let i = 0; i < opts.n; i++) {
    const indices = sampleIds(rand, opts.d, opts.nnzPerRow);
    const values = Float32Array.from(indices, () => rand() + 1e-3);
    let z = opts.bTrue;
    indices.forEach((j, k) => (z += values[k] * opts.wTrue[j]));
    y[i] = rand() < sigmoid(z) ? 1 : 0;
    rows.push({ indices, values });
  }
  return { X: stackRows(rows, opts.d), y };
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

/** A TextFeatures record with the given fired ids; counts and max activations drawn at random. */
export function textFeatures(ids: Iterable<number>, rand: () => number, nTokens = 20): TextFeatures {
  const sorted = Int32Array.from([...new Set(ids)].sort((a, b) => a - b));
  const counts = Int32Array.from(sorted, () => 1 + Math.floor(rand() * 3));
  return {
    nTokens,
    ids: sorted,
    counts,
    rates: Float32Array.from(counts, (c) => c / nTokens),
    maxActs: Float32Array.from(sorted, () => 0.5 + rand() * 4),
  };
}

/**
 * SAE-like texts: each text fires `background` random features of [0, dSae); toxic texts (label 1)
 * also fire each of `toxicFeatures` with probability pPlanted, non-toxic ones with probability pLeak.
 */
export function plantedTexts(opts: {
  n: number; dSae: number; background: number; toxicFeatures: number[]; pPlanted: number; pLeak: number;
  langs: string[]; positiveRate?: number; seed: number;
}): { features: TextFeatures[]; labels: Uint8Array; langs: string[] } {
  const rand = seededRandom(opts.seed);
  const features: TextFeatures[] = [];
  const labels = new Uint8Array(opts.n);
  const langs: string[] = [];
  for (let i = 0; i < opts.n; i++) {
    const label = rand() < (opts.positiveRate ?? 0.5) ? 1 : 0;
    const ids = [...sampleIds(rand, opts.dSae, opts.background)];
    for (const t of opts.toxicFeatures) if (rand() < (label ? opts.pPlanted : opts.pLeak)) ids.push(t);
    features.push(textFeatures(ids, rand));
    labels[i] = label;
    langs.push(opts.langs[i % opts.langs.length]);
  }
  return { features, labels, langs };
}
