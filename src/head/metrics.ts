/**
 * Binary classification metrics, per language and overall. Label 1 = toxic = the positive class.
 *
 *   precision, recall, f1  of the positive class at the given decisions (0 when undefined: no
 *                          predicted positives, no actual positives; sklearn's zero_division=0)
 *   macro_f1               mean of the F1 of the positive class and the F1 of the negative class
 *   roc_auc                Mann-Whitney: P(score of a random positive > a random negative), ties count
 *                          1/2 (midranks); null when either class is absent
 *   pr_auc                 average precision: sum over distinct score thresholds, descending, of
 *                          (R_k - R_{k-1}) P_k, tied scores entering together (sklearn's
 *                          average_precision_score); null when there are no positives
 *   ece                    expected calibration error of P(toxic): 10 equal-width bins over [0, 1]
 *                          (bin b = [b/10, (b+1)/10), the last bin includes 1), sum over bins of
 *                          (n_b / n) |mean label in b - mean probability in b|; null when the scores
 *                          are not probabilities (e.g. the discovery rule's score)
 */
import { validationError } from '../errors.js';

export interface BinaryMetrics {
  n: number;
  precision: number;
  recall: number;
  f1: number;
  macro_f1: number;
  roc_auc: number | null;
  pr_auc: number | null;
  ece: number | null;
}

export interface MetricsReport {
  languages: Record<string, BinaryMetrics>;
  overall: BinaryMetrics;
}

export interface MetricsInput {
  labels: ArrayLike<number>;
  /** ranking scores (probabilities for the head) */
  scores: ArrayLike<number>;
  /** the decisions: 1 = flagged toxic */
  predicted: ArrayLike<number>;
  /** whether `scores` are probabilities, so ECE is defined (default true) */
  probabilities?: boolean;
}

export function binaryMetrics(input: MetricsInput): BinaryMetrics {
  const { labels, scores, predicted } = input;
  const n = labels.length;
  if (scores.length !== n || predicted.length !== n) throw validationError(`metrics: ${n} labels, ${scores.length} scores and ${predicted.length} decisions`);
  let tp = 0, fp = 0, fn = 0, tn = 0;
  for (let i = 0; i < n; i++) {
    const y = labels[i], p = predicted[i] ? 1 : 0;
    if (y === 1 && p === 1) tp++;
    else if (y === 1) fn++;
    else if (p === 1) fp++;
    else tn++;
  }
  const f1Pos = f1(tp, fp, fn);
  const f1Neg = f1(tn, fn, fp);
  return {
    n,
    precision: ratio(tp, tp + fp),
    recall: ratio(tp, tp + fn),
    f1: f1Pos,
    macro_f1: (f1Pos + f1Neg) / 2,
    roc_auc: rocAuc(labels, scores),
    pr_auc: averagePrecision(labels, scores),
    ece: input.probabilities === false ? null : expectedCalibrationError(labels, scores),
  };
}

/** Metrics per language (keys sorted) and over everything. */
export function metricsByLanguage(input: MetricsInput & { langs: readonly string[] }): MetricsReport {
  const groups = new Map<string, number[]>();
  input.langs.forEach((l, i) => {
    const g = groups.get(l);
    if (g) g.push(i);
    else groups.set(l, [i]);
  });
  const languages: Record<string, BinaryMetrics> = {};
  for (const lang of [...groups.keys()].sort()) {
    const idx = groups.get(lang)!;
    languages[lang] = binaryMetrics({
      labels: idx.map((i) => input.labels[i]),
      scores: idx.map((i) => input.scores[i]),
      predicted: idx.map((i) => input.predicted[i]),
      probabilities: input.probabilities,
    });
  }
  return { languages, overall: binaryMetrics(input) };
}

export function rocAuc(labels: ArrayLike<number>, scores: ArrayLike<number>): number | null {
  const order = argsortAscending(scores);
  let nPos = 0;
  for (let i = 0; i < labels.length; i++) nPos += labels[i] === 1 ? 1 : 0;
  const nNeg = labels.length - nPos;
  if (nPos === 0 || nNeg === 0) return null;
  let rankSumPos = 0;
  for (let a = 0; a < order.length; ) {
    let b = a;
    while (b + 1 < order.length && scores[order[b + 1]] === scores[order[a]]) b++;
    const midrank = (a + b) / 2 + 1; // ranks are 1-based
    for (let k = a; k <= b; k++) if (labels[order[k]] === 1) rankSumPos += midrank;
    a = b + 1;
  }
  return (rankSumPos - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

export function averagePrecision(labels: ArrayLike<number>, scores: ArrayLike<number>): number | null {
  const order = argsortAscending(scores).reverse();
  let nPos = 0;
  for (let i = 0; i < labels.length; i++) nPos += labels[i] === 1 ? 1 : 0;
  if (nPos === 0) return null;
  let tp = 0, seen = 0, prevRecall = 0, ap = 0;
  for (let a = 0; a < order.length; ) {
    let b = a;
    while (b + 1 < order.length && scores[order[b + 1]] === scores[order[a]]) b++;
    for (let k = a; k <= b; k++) tp += labels[order[k]] === 1 ? 1 : 0;
    seen = b + 1;
    const recall = tp / nPos;
    ap += (recall - prevRecall) * (tp / seen);
    prevRecall = recall;
    a = b + 1;
  }
  return ap;
}

export const ECE_BINS = 10;

export function expectedCalibrationError(labels: ArrayLike<number>, probs: ArrayLike<number>, bins = ECE_BINS): number | null {
  const n = labels.length;
  if (n === 0) return null;
  const count = new Float64Array(bins), sumY = new Float64Array(bins), sumP = new Float64Array(bins);
  for (let i = 0; i < n; i++) {
    const p = probs[i];
    if (!(p >= 0 && p <= 1)) throw validationError(`ece: probability ${i} is ${p}, expected a value in [0, 1]`);
    const b = Math.min(bins - 1, Math.floor(p * bins));
    count[b]++;
    sumY[b] += labels[i];
    sumP[b] += p;
  }
  let ece = 0;
  for (let b = 0; b < bins; b++) if (count[b] > 0) ece += Math.abs(sumY[b] - sumP[b]) / n;
  return ece;
}

function f1(tp: number, fp: number, fn: number): number {
  return ratio(2 * tp, 2 * tp + fp + fn);
}
function ratio(a: number, b: number): number {
  return b === 0 ? 0 : a / b;
}
function argsortAscending(scores: ArrayLike<number>): number[] {
  const order = Array.from({ length: scores.length }, (_, i) => i);
  return order.sort((a, b) => scores[a] - scores[b] || a - b);
}
