import { describe, expect, it } from 'vitest';
import { calibratedProbability, calibratorFor, fitCalibration, fitPlatt, fitTemperature } from '../src/head/calibration.js';
import { expectedCalibrationError } from '../src/head/metrics.js';
import { sigmoid } from '../src/head/logistic.js';
import { seededRandom } from '../src/util/random.js';
import { gaussian } from './head-synthetic.js';

/** Labels drawn from sigmoid(zTrue); the model reports distort(zTrue) instead. */
function miscalibrated(n: number, seed: number, distort: (z: number) => number) {
  const rand = seededRandom(seed);
  const logits: number[] = [], labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const z = 1.5 * gaussian(rand);
    labels.push(rand() < sigmoid(z) ? 1 : 0);
    logits.push(distort(z));
  }
  return { logits, labels };
}
const ece = (labels: number[], logits: number[], map: (z: number) => number) => expectedCalibrationError(labels, logits.map(map))!;

describe('calibration', () => {
  it('Platt scaling undoes an overconfident, shifted logit and lowers ECE', () => {
    const fit = miscalibrated(6000, 1, (z) => 3 * z + 1);
    const held = miscalibrated(6000, 2, (z) => 3 * z + 1);
    const c = fitPlatt(fit.logits, fit.labels);
    expect(c).toMatchObject({ kind: 'platt', a: expect.closeTo(1 / 3, 1), b: expect.closeTo(-1 / 3, 1) });
    const before = ece(held.labels, held.logits, sigmoid);
    const after = ece(held.labels, held.logits, (z) => calibratedProbability(c, z));
    expect(before).toBeGreaterThan(0.1);
    expect(after).toBeLessThan(0.03);
  });

  it('temperature scaling recovers the temperature of an overconfident logit', () => {
    const fit = miscalibrated(6000, 3, (z) => 2.5 * z);
    const c = fitTemperature(fit.logits, fit.labels);
    expect(c.kind).toBe('temperature');
    if (c.kind === 'temperature') expect(c.temperature).toBeCloseTo(2.5, 0);
    const held = miscalibrated(6000, 4, (z) => 2.5 * z);
    expect(ece(held.labels, held.logits, (z) => calibratedProbability(c, z))).toBeLessThan(ece(held.labels, held.logits, sigmoid) / 3);
  });

  it('fits languages with enough data separately and sends the rest to the pooled calibrator', () => {
    const en = miscalibrated(1000, 5, (z) => 3 * z);
    const fr = miscalibrated(1000, 6, (z) => 0.5 * z - 1);
    const sw = miscalibrated(50, 7, (z) => z);
    const logits = [...en.logits, ...fr.logits, ...sw.logits];
    const labels = [...en.labels, ...fr.labels, ...sw.labels];
    const langs = [...en.logits.map(() => 'en'), ...fr.logits.map(() => 'fr'), ...sw.logits.map(() => 'sw')];
    const table = fitCalibration(logits, labels, langs, { method: 'platt', minSamples: 200, minPerClass: 20 });
    expect(Object.keys(table.perLanguage)).toEqual(['en', 'fr']);
    expect(table.perLanguage.en).toMatchObject({ a: expect.closeTo(1 / 3, 1) });
    expect(table.perLanguage.fr).toMatchObject({ a: expect.closeTo(2, 0), b: expect.closeTo(2, 0) });
    expect(calibratorFor(table, 'sw').languageUsed).toBe('pooled');
    expect(calibratorFor(table, undefined).languageUsed).toBe('pooled');
    expect(calibratorFor(table, 'fr').calibrator).toBe(table.perLanguage.fr);
    // per-language calibration beats the pooled one on each language's own data
    for (const [lang, d] of [['en', en], ['fr', fr]] as const) {
      const own = ece(d.labels, d.logits, (z) => calibratedProbability(table.perLanguage[lang], z));
      const pooled = ece(d.labels, d.logits, (z) => calibratedProbability(table.pooled, z));
      expect(own).toBeLessThan(pooled);
    }
  });
});
