/**
 * How far a cheaper engine (int8, f16) is from the float32 one, on the same inputs: pure comparisons of what
 * the two engines returned. Real tokens only (pads are excluded everywhere).
 *
 *   residual error      |r_q - r_32| over real tokens: max absolute, and ||r_q - r_32|| / ||r_32|| (RMS ratio)
 *   fired_set_agreement fraction of real tokens whose fired set {f : code_f > 0} is identical
 *   firing-rate error   per text and feature, |rate_q - rate_32| (max and mean over the union of fired features)
 *   head changes        score differences, decision flips, ROC-AUC of each on labeled texts
 */
import type { HeadPredictions } from '../head/evaluate.js';
import { rocAuc } from '../head/metrics.js';
import type { ResidualBatch } from './forward-engine.js';
import type { TextFeatures } from '../head/text-features.js';
import type { TopKBatch } from './types.js';

export interface ResidualError {
  tokens: number;
  max_abs: number;
  /** ||a - b||_F / ||b||_F over real tokens (b = float32) */
  rel_rms: number;
}

export interface FiredSetAgreement {
  tokens: number;
  agreeing: number;
  fired_set_agreement: number;
  /** mean |value_a - value_b| over features fired in both, where the sets agree */
  mean_abs_value_error: number;
}

export interface RateError {
  texts: number;
  max_abs: number;
  mean_abs: number;
}

export interface HeadChange {
  texts: number;
  max_abs_probability_change: number;
  mean_abs_probability_change: number;
  decision_changes: number;
  roc_auc_reference: number | null;
  roc_auc_candidate: number | null;
  /** candidate minus reference */
  roc_auc_change: number | null;
}

/** Accumulates residual errors over several batches (candidate `a`, reference `b`). */
export class ResidualErrorSum {
  private tokens = 0;
  private maxAbs = 0;
  private num = 0;
  private den = 0;

  add(a: ResidualBatch, b: ResidualBatch): void {
    sameShape(a, b);
    const D = a.dModel;
    for (let t = 0; t < a.batch * a.seqLen; t++) {
      if (!b.mask[t]) continue;
      this.tokens++;
      for (let i = t * D; i < (t + 1) * D; i++) {
        const d = a.resid[i] - b.resid[i];
        this.maxAbs = Math.max(this.maxAbs, Math.abs(d));
        this.num += d * d;
        this.den += b.resid[i] * b.resid[i];
      }
    }
  }

  result(): ResidualError {
    return { tokens: this.tokens, max_abs: this.maxAbs, rel_rms: this.den > 0 ? Math.sqrt(this.num / this.den) : 0 };
  }
}

/** Accumulates fired-set agreement over several batches (candidate `a`, reference `b`). */
export class FiredSetAgreementSum {
  private tokens = 0;
  private agreeing = 0;
  private valueErr = 0;
  private values = 0;

  add(a: TopKBatch, b: TopKBatch): void {
    if (a.batch !== b.batch || a.seqLen !== b.seqLen || a.k !== b.k) throw new Error('fired sets of differently shaped batches');
    const k = a.k;
    for (let t = 0; t < a.batch * a.seqLen; t++) {
      if (!b.mask[t]) continue;
      this.tokens++;
      const fa = fired(a, t, k), fb = fired(b, t, k);
      if (fa.size !== fb.size || [...fa.keys()].some((f) => !fb.has(f))) continue;
      this.agreeing++;
      for (const [f, v] of fb) {
        this.valueErr += Math.abs(fa.get(f)! - v);
        this.values++;
      }
    }
  }

  result(): FiredSetAgreement {
    return {
      tokens: this.tokens,
      agreeing: this.agreeing,
      fired_set_agreement: this.tokens ? this.agreeing / this.tokens : 1,
      mean_abs_value_error: this.values ? this.valueErr / this.values : 0,
    };
  }
}

function fired(b: TopKBatch, t: number, k: number): Map<number, number> {
  const out = new Map<number, number>();
  for (let j = 0; j < k; j++) if (b.values[t * k + j] > 0) out.set(b.indices[t * k + j], b.values[t * k + j]);
  return out;
}

/** Firing-rate error per text over the union of features either side fired. */
export function firingRateError(a: readonly TextFeatures[], b: readonly TextFeatures[]): RateError {
  if (a.length !== b.length) throw new Error(`firing rates of ${a.length} vs ${b.length} texts`);
  let maxAbs = 0, sum = 0, n = 0;
  a.forEach((fa, i) => {
    const ra = rateMap(fa), rb = rateMap(b[i]);
    for (const f of new Set([...ra.keys(), ...rb.keys()])) {
      const d = Math.abs((ra.get(f) ?? 0) - (rb.get(f) ?? 0));
      maxAbs = Math.max(maxAbs, d);
      sum += d;
      n++;
    }
  });
  return { texts: a.length, max_abs: maxAbs, mean_abs: n ? sum / n : 0 };
}

function rateMap(f: TextFeatures): Map<number, number> {
  return new Map(Array.from(f.ids, (id, j): [number, number] => [id, f.rates[j]]));
}

/** The head's outputs on the candidate's features (`a`) against the float32 ones (`b`), with labels for ROC-AUC. */
export function headChange(a: HeadPredictions, b: HeadPredictions, labels?: ArrayLike<number>): HeadChange {
  const n = b.probabilities.length;
  let maxAbs = 0, sum = 0, flips = 0;
  for (let i = 0; i < n; i++) {
    const d = Math.abs(a.probabilities[i] - b.probabilities[i]);
    maxAbs = Math.max(maxAbs, d);
    sum += d;
    if (a.toxic[i] !== b.toxic[i]) flips++;
  }
  const aucB = labels ? rocAuc(labels, b.probabilities) : null;
  const aucA = labels ? rocAuc(labels, a.probabilities) : null;
  return {
    texts: n,
    max_abs_probability_change: maxAbs,
    mean_abs_probability_change: n ? sum / n : 0,
    decision_changes: flips,
    roc_auc_reference: aucB,
    roc_auc_candidate: aucA,
    roc_auc_change: aucA !== null && aucB !== null ? aucA - aucB : null,
  };
}

function sameShape(a: ResidualBatch, b: ResidualBatch): void {
  if (a.batch !== b.batch || a.seqLen !== b.seqLen || a.dModel !== b.dModel) throw new Error('residuals of differently shaped batches');
}
