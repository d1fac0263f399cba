/**
 * Pure numbers for the admin page: precision / recall / F1 of labeled predictions re-evaluated at any
 * threshold (stored scores against the moderators' labels), the effect of moving a threshold, and the
 * precision/recall/F1 curve. Positive = toxic; a text is toxic when score >= threshold (as the head does).
 */
import { f1Stats, type Confusion, type F1Stats } from '../../drift/f1.js';

export interface ScoredLabel {
  score: number;
  /** the moderator's label; true = toxic */
  truth: boolean;
}

export function confusionAt(rows: readonly ScoredLabel[], threshold: number): Confusion {
  const c: Confusion = { tp: 0, fp: 0, fn: 0, tn: 0 };
  for (const r of rows) {
    const toxic = r.score >= threshold;
    if (toxic && r.truth) c.tp++;
    else if (toxic) c.fp++;
    else if (r.truth) c.fn++;
    else c.tn++;
  }
  return c;
}

export interface ThresholdPreview {
  from: number;
  to: number;
  /** labeled predictions whose label changes: clean -> toxic and toxic -> clean */
  flips: { toToxic: number; toClean: number };
  /** of the flips, how many move to the moderators' label (fixed) and away from it (broken) */
  fixed: number;
  broken: number;
  before: F1Stats & Confusion;
  after: F1Stats & Confusion;
}

/** What moving one language's threshold from `from` to `to` does to its labeled predictions. */
export function previewThreshold(rows: readonly ScoredLabel[], from: number, to: number): ThresholdPreview {
  let toToxic = 0;
  let toClean = 0;
  let fixed = 0;
  let broken = 0;
  for (const r of rows) {
    const was = r.score >= from;
    const now = r.score >= to;
    if (was === now) continue;
    if (now) toToxic++;
    else toClean++;
    if (now === r.truth) fixed++;
    else broken++;
  }
  const before = confusionAt(rows, from);
  const after = confusionAt(rows, to);
  return { from, to, flips: { toToxic, toClean }, fixed, broken, before: { ...before, ...f1Stats(before) }, after: { ...after, ...f1Stats(after) } };
}

export interface CurvePoint extends F1Stats {
  threshold: number;
}

/** Precision, recall and F1 at `steps + 1` thresholds evenly spaced over [0, 1]. O(n log n + steps). */
export function thresholdCurve(rows: readonly ScoredLabel[], steps = 100): CurvePoint[] {
  const sorted = [...rows].sort((a, b) => b.score - a.score); // descending score
  const positives = rows.filter((r) => r.truth).length;
  const out: CurvePoint[] = [];
  let i = 0;
  let tp = 0;
  let fp = 0;
  for (let s = steps; s >= 0; s--) {
    const threshold = s / steps;
    while (i < sorted.length && sorted[i].score >= threshold) {
      if (sorted[i].truth) tp++;
      else fp++;
      i++;
    }
    const stats = f1Stats({ tp, fp, fn: positives - tp, tn: rows.length - positives - fp });
    out.push({ threshold, ...stats });
  }
  return out.reverse();
}
