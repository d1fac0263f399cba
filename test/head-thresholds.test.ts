import { describe, expect, it } from 'vitest';
import { chooseThreshold, chooseThresholds, thresholdFor } from '../src/head/thresholds.js';
import { binaryMetrics } from '../src/head/metrics.js';
import { seededRandom } from '../src/util/random.js';

/** Calibrated-looking scores: label ~ Bernoulli(p), p uniform; rounded so that ties occur. */
function scored(n: number, seed: number) {
  const rand = seededRandom(seed);
  const probs: number[] = [], labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const p = Math.round(rand() * 200) / 200;
    probs.push(p);
    labels.push(rand() < p ? 1 : 0);
  }
  return { probs, labels };
}
const decide = (probs: number[], t: number) => probs.map((p) => (p >= t ? 1 : 0));
/** precision and F1 of flagging p >= t, counted directly */
function at(probs: number[], labels: number[], t: number) {
  let tp = 0, fp = 0, fn = 0;
  probs.forEach((p, i) => {
    if (p >= t) labels[i] ? tp++ : fp++;
    else if (labels[i]) fn++;
  });
  return { precision: tp + fp ? tp / (tp + fp) : 0, f1: tp ? (2 * tp) / (2 * tp + fp + fn) : 0 };
}

describe('thresholds', () => {
  const { probs, labels } = scored(4000, 11);

  it('meets a requested precision with the lowest such threshold', () => {
    for (const target of [0.8, 0.9, 0.95]) {
      const c = chooseThreshold(probs, labels, { mode: 'precision', target });
      expect(c.met).toBe(true);
      const m = binaryMetrics({ labels, scores: probs, predicted: decide(probs, c.threshold) });
      expect(m.precision).toBeGreaterThanOrEqual(target);
      expect(m.precision).toBeCloseTo(c.precision, 12);
      expect(m.recall).toBeCloseTo(c.recall, 12);
      // every lower threshold misses the target
      for (const t of [...new Set(probs)].filter((p) => p < c.threshold)) {
        expect(at(probs, labels, t).precision).toBeLessThan(target);
      }
    }
  });

  it('maximises F1 over every possible cut', () => {
    const c = chooseThreshold(probs, labels, { mode: 'f1' });
    let bestF1 = 0;
    for (const t of new Set(probs)) bestF1 = Math.max(bestF1, at(probs, labels, t).f1);
    expect(c.f1).toBeCloseTo(bestF1, 12);
    expect(binaryMetrics({ labels, scores: probs, predicted: decide(probs, c.threshold) }).f1).toBeCloseTo(bestF1, 12);
  });

  it('reports an unreachable precision target as not met', () => {
    const c = chooseThreshold([0.9, 0.8, 0.7], [0, 1, 0], { mode: 'precision', target: 0.99 });
    expect(c.met).toBe(false);
    expect(c.precision).toBe(0.5);
    expect(() => chooseThreshold([0.5], [1], { mode: 'precision', target: 1.5 })).toThrow(/target precision/);
  });

  it('chooses per-language thresholds and falls back to pooled for small languages', () => {
    const en = scored(1000, 12);
    const de = { probs: en.probs.map((p) => p * 0.5), labels: en.labels }; // same ranking, scores halved
    const tiny = scored(30, 13);
    const all = [en, de, tiny];
    const langs = all.flatMap((d, k) => d.probs.map(() => ['en', 'de', 'yo'][k]));
    const { table, choices } = chooseThresholds(all.flatMap((d) => d.probs), all.flatMap((d) => d.labels), langs, { mode: 'f1' });
    expect(Object.keys(table.perLanguage).sort()).toEqual(['de', 'en']);
    expect(table.perLanguage.de).toBeCloseTo(table.perLanguage.en / 2, 2);
    expect(choices.pooled.threshold).toBe(table.pooled);
    expect(thresholdFor(table, 'yo')).toEqual({ threshold: table.pooled, languageUsed: 'pooled' });
    expect(thresholdFor(table, 'de')).toEqual({ threshold: table.perLanguage.de, languageUsed: 'de' });
  });
});

describe('thresholds for macro-F1 and with class weights', () => {
  const { probs, labels } = scored(3000, 12);
  const cuts = [...new Set(probs)].sort((a, b) => a - b);
  const macroAt = (t: number) => binaryMetrics({ labels, scores: probs, predicted: decide(probs, t) }).macro_f1;

  it('macro-f1 picks the cut with the highest mean of both classes\' F1', () => {
    const c = chooseThreshold(probs, labels, { mode: 'macro-f1' });
    const best = Math.max(...cuts.map(macroAt));
    expect(macroAt(c.threshold)).toBeCloseTo(best, 12);
  });

  it('weights count texts that many times: the same choice as repeating them', () => {
    const weights = labels.map((l) => (l === 1 ? 3 : 1));
    const repeated = { probs: [...probs], labels: [...labels] };
    probs.forEach((p, i) => {
      if (labels[i] === 1) for (let k = 0; k < 2; k++) { repeated.probs.push(p); repeated.labels.push(1); }
    });
    for (const objective of [{ mode: 'f1' as const }, { mode: 'macro-f1' as const }, { mode: 'precision' as const, target: 0.85 }]) {
      const a = chooseThreshold(probs, labels, objective, weights);
      const b = chooseThreshold(repeated.probs, repeated.labels, objective);
      expect(a.threshold, objective.mode).toBeCloseTo(b.threshold, 12);
      expect(a.f1, objective.mode).toBeCloseTo(b.f1, 12);
    }
  });
});
