/**
 * Decision thresholds on calibrated P(toxic): a text is flagged when p >= threshold.
 *
 * Chosen on the calibration split, per language where it has enough data (GroupPolicy), pooled
 * otherwise, for one of two objectives:
 *   { mode: 'f1' }                         the threshold with the highest F1 of the toxic class
 *   { mode: 'macro-f1' }                   the threshold with the highest mean of both classes' F1 (what
 *                                          moderation benchmarks report; flags less than 'f1' when toxic texts
 *                                          are rare)
 *   { mode: 'precision', target }          the lowest threshold whose precision is >= target (so the
 *                                          highest recall meeting it); when no threshold meets it, the
 *                                          one with the highest precision, reported with met = false
 * Candidates are the cuts between distinct scores; a threshold sits halfway between the lowest score
 * it flags and the next lower score, so it makes the same decisions on the split and leaves a margin.
 */
import { validationError } from '../errors.js';
import { groupByLanguage, hasEnoughData, pick, type GroupPolicy } from './groups.js';

export type ThresholdObjective = { mode: 'f1' } | { mode: 'macro-f1' } | { mode: 'precision'; target: number };

export interface ThresholdChoice {
  threshold: number;
  /** on the split it was chosen on */
  precision: number;
  recall: number;
  f1: number;
  /** whether the objective was met (always true for 'f1') */
  met: boolean;
  n: number;
}

export interface ThresholdTable {
  pooled: number;
  perLanguage: Record<string, number>;
}

/**
 * `weights` (default all 1) count each text that many times: the prior shift's class weights, so F1 and
 * precision are those at the deployment's prevalence (src/head/prior.ts).
 */
export function chooseThreshold(probs: ArrayLike<number>, labels: ArrayLike<number>, objective: ThresholdObjective, weights?: ArrayLike<number>): ThresholdChoice {
  const n = probs.length;
  if (n === 0 || labels.length !== n) throw validationError(`thresholds: need matching non-empty probabilities and labels (got ${n} and ${labels.length})`);
  if (objective.mode === 'precision' && !(objective.target > 0 && objective.target <= 1)) {
    throw validationError(`thresholds: target precision must be in (0, 1], got ${objective.target}`);
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => probs[b] - probs[a] || a - b);
  const w = (i: number) => (weights ? weights[i] : 1);
  let nPos = 0, total = 0;
  for (let i = 0; i < n; i++) {
    nPos += labels[i] === 1 ? w(i) : 0;
    total += w(i);
  }
  const nNeg = total - nPos;
  let bestMacro = nNeg <= 0 ? 0 : nNeg / (2 * nNeg + nPos); // flag nothing: F1 0 for the toxic class
  // "flag nothing": a threshold just above the top score
  let best: ThresholdChoice = { threshold: Math.min(1, probs[order[0]] + 1e-6), precision: 0, recall: 0, f1: 0, met: false, n };
  let tp = 0, flagged = 0;
  for (let a = 0; a < n; ) {
    let b = a;
    while (b + 1 < n && probs[order[b + 1]] === probs[order[a]]) b++;
    for (let k = a; k <= b; k++) {
      tp += labels[order[k]] === 1 ? w(order[k]) : 0;
      flagged += w(order[k]);
    }
    const lowest = probs[order[b]];
    const threshold = b + 1 < n ? (lowest + probs[order[b + 1]]) / 2 : lowest;
    const precision = flagged === 0 ? 0 : tp / flagged, recall = nPos === 0 ? 0 : tp / nPos;
    const f1 = tp === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    const cand: ThresholdChoice = { threshold, precision, recall, f1, met: true, n };
    if (objective.mode === 'macro-f1') {
      const fp = flagged - tp, fn = nPos - tp, tn = nNeg - fp;
      const f1Neg = tn <= 0 ? 0 : (2 * tn) / (2 * tn + fp + fn);
      const macro = (f1 + f1Neg) / 2;
      if (macro > bestMacro) { bestMacro = macro; best = cand; }
    } else if (objective.mode === 'f1') {
      if (f1 > best.f1 || !best.met) best = cand;
    } else if (precision >= objective.target) {
      best = cand; // deeper cuts come later: the last one meeting the target has the lowest threshold
    } else if (!best.met && precision >= best.precision) {
      best = { ...cand, met: false };
    }
    a = b + 1;
  }
  return best;
}

/** Per-language thresholds where a language has enough data, and the pooled one. */
export function chooseThresholds(
  probs: ArrayLike<number>, labels: ArrayLike<number>, langs: readonly string[],
  objective: ThresholdObjective, policy: GroupPolicy = {}, weights?: ArrayLike<number>,
): { table: ThresholdTable; choices: Record<string, ThresholdChoice> } {
  const pooled = chooseThreshold(probs, labels, objective, weights);
  const table: ThresholdTable = { pooled: pooled.threshold, perLanguage: {} };
  const choices: Record<string, ThresholdChoice> = { pooled };
  for (const [lang, idx] of groupByLanguage(langs)) {
    if (!hasEnoughData(labels, idx, policy)) continue;
    const c = chooseThreshold(pick(probs, idx), pick(labels, idx), objective, weights && pick(weights, idx));
    table.perLanguage[lang] = c.threshold;
    choices[lang] = c;
  }
  return { table, choices };
}

/** The threshold for a language (its own, else pooled) and which one was used. */
export function thresholdFor(table: ThresholdTable, lang: string | undefined): { threshold: number; languageUsed: string } {
  const own = lang === undefined ? undefined : table.perLanguage[lang];
  return own !== undefined ? { threshold: own, languageUsed: lang! } : { threshold: table.pooled, languageUsed: 'pooled' };
}
