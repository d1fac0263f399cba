import { describe, expect, it } from 'vitest';
import { averagePrecision, binaryMetrics, expectedCalibrationError, metricsByLanguage, rocAuc } from '../src/head/metrics.js';

// A small case worked by hand: three positives, three negatives, ties at 0.9 and at 0.4.
const labels = [1, 0, 1, 0, 1, 0];
const scores = [0.9, 0.9, 0.7, 0.4, 0.4, 0.1];

describe('metrics', () => {
  it('ROC-AUC counts tied positive/negative pairs as one half', () => {
    // pairs won: 0.9 -> 0.5 + 1 + 1, 0.7 -> 0 + 1 + 1, 0.4 -> 0 + 0.5 + 1 = 6 of 9
    expect(rocAuc(labels, scores)).toBeCloseTo(6 / 9, 12);
    expect(rocAuc([1, 1, 0, 0], [0.8, 0.7, 0.2, 0.1])).toBe(1);
    expect(rocAuc([1, 1, 0, 0], [0.1, 0.2, 0.7, 0.8])).toBe(0);
    expect(rocAuc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5])).toBe(0.5);
    expect(rocAuc([1, 1], [0.3, 0.4])).toBeNull();
  });

  it('PR-AUC is average precision with tied scores entering together', () => {
    // thresholds 0.9: R 1/3 P 1/2; 0.7: R 2/3 P 2/3; 0.4: R 1 P 3/5
    expect(averagePrecision(labels, scores)).toBeCloseTo(1 / 6 + 2 / 9 + 1 / 5, 12);
    expect(averagePrecision([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5])).toBe(0.5); // = prevalence
    expect(averagePrecision([0, 0], [0.5, 0.4])).toBeNull();
  });

  it('ECE uses 10 equal-width bins weighted by their share of the texts', () => {
    // bins 9: y 0.5 vs p 0.9 (2 texts); 7: 1 vs 0.7; 4: 0.5 vs 0.4 (2); 1: 0 vs 0.1
    expect(expectedCalibrationError(labels, scores)).toBeCloseTo((2 * 0.4 + 0.3 + 2 * 0.1 + 0.1) / 6, 12);
    expect(expectedCalibrationError([1, 0], [1, 0])).toBe(0); // p = 1 falls in the last bin
    expect(() => expectedCalibrationError([1], [1.5])).toThrow(/probability 0 is 1.5/);
  });

  it('precision, recall, F1 and macro-F1 at given decisions', () => {
    const m = binaryMetrics({ labels, scores, predicted: [1, 1, 1, 1, 1, 0] });
    // positive: tp 3, fp 2, fn 0; negative: tp 1, fp 0, fn 2
    expect(m).toEqual({
      n: 6,
      precision: 3 / 5,
      recall: 1,
      f1: 0.75,
      macro_f1: (0.75 + 0.5) / 2,
      roc_auc: expect.closeTo(6 / 9, 12),
      pr_auc: expect.closeTo(1 / 6 + 2 / 9 + 1 / 5, 12),
      ece: expect.closeTo(1.4 / 6, 12),
    });
    const none = binaryMetrics({ labels, scores, predicted: [0, 0, 0, 0, 0, 0], probabilities: false });
    expect(none.precision).toBe(0);
    expect(none.f1).toBe(0);
    expect(none.ece).toBeNull();
  });

  it('reports per language and overall with exactly the documented keys', () => {
    const r = metricsByLanguage({ labels, scores, predicted: [1, 0, 1, 0, 0, 0], langs: ['en', 'en', 'fr', 'fr', 'en', 'en'] });
    expect(Object.keys(r.languages)).toEqual(['en', 'fr']);
    expect(Object.keys(r.overall).sort()).toEqual(['ece', 'f1', 'macro_f1', 'n', 'pr_auc', 'precision', 'recall', 'roc_auc']);
    expect(r.languages.en.n).toBe(4);
    expect(r.languages.fr).toMatchObject({ n: 2, precision: 1, recall: 1, roc_auc: 1 });
    expect(r.overall.n).toBe(6);
  });
});
