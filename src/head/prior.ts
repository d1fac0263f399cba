/**
 * Prior shift: calibrate for the deployment's prevalence, not the training sample's.
 *
 * A calibrator fitted on a sample where a share pi_s of texts is toxic estimates P_s(toxic | x). Where the
 * share is pi_d instead (and texts of each class look the same), Bayes' rule gives (Saerens et al. 2002)
 *
 *   logit P_d(toxic | x) = logit P_s(toxic | x) + logit(pi_d) - logit(pi_s)
 *
 * so a deployment prevalence moves every calibrated logit by one constant per language. Thresholds then move
 * with it: they are re-chosen on the calibration split with each text weighted to the deployment's class
 * mix (toxic texts by pi_d / pi_s, the others by (1 - pi_d) / (1 - pi_s)), for F1 or a target precision
 * at that prevalence (src/head/thresholds.ts).
 *
 *   sample      pi_s per language (the calibration split's share; 'pooled' for the pooled calibrator)
 *   deployment  pi_d per language, or pooled for every language without its own; none = no shift
 */

export interface PrevalenceTable {
  pooled?: number;
  perLanguage: Record<string, number>;
}

export interface Prior {
  /** the calibration split's toxic share: pooled, and per language that has its own calibrator */
  sample: { pooled: number; perLanguage: Record<string, number> };
  /** the deployment's toxic share (given to train, set by an operator, or estimated from feedback) */
  deployment: PrevalenceTable;
}

/** Keep shares away from 0 and 1 so the log-odds stay finite. */
const clampShare = (p: number) => Math.min(1 - 1e-4, Math.max(1e-4, p));
export const logOdds = (p: number) => Math.log(clampShare(p) / (1 - clampShare(p)));

/** The sample share behind a calibrator ('pooled' or a language) and the deployment share for `lang`. */
export function shares(prior: Prior, calibrationUsed: string, lang: string | undefined): { sample: number; deployment: number } {
  const sample = calibrationUsed === 'pooled' ? prior.sample.pooled : prior.sample.perLanguage[calibrationUsed] ?? prior.sample.pooled;
  const own = lang === undefined ? undefined : prior.deployment.perLanguage[lang];
  return { sample, deployment: own ?? prior.deployment.pooled ?? sample };
}

/** logit(pi_d) - logit(pi_s): added to the calibrated logit. */
export function priorShift(prior: Prior | undefined, calibrationUsed: string, lang: string | undefined): number {
  if (!prior) return 0;
  const s = shares(prior, calibrationUsed, lang);
  return s.deployment === s.sample ? 0 : logOdds(s.deployment) - logOdds(s.sample);
}

/** Per-text weights that turn the sample's class mix into the deployment's. */
export function priorWeight(prior: Prior | undefined, calibrationUsed: string, lang: string | undefined, label: number): number {
  if (!prior) return 1;
  const s = shares(prior, calibrationUsed, lang);
  const ps = clampShare(s.sample), pd = clampShare(s.deployment);
  return label === 1 ? pd / ps : (1 - pd) / (1 - ps);
}

/** Toxic share of each language's labels, and pooled. */
export function sampleShares(labels: ArrayLike<number>, langs: readonly string[]): { pooled: number; perLanguage: Record<string, number> } {
  const n: Record<string, number> = {}, pos: Record<string, number> = {};
  let all = 0;
  langs.forEach((l, i) => {
    n[l] = (n[l] ?? 0) + 1;
    pos[l] = (pos[l] ?? 0) + (labels[i] === 1 ? 1 : 0);
    all += labels[i] === 1 ? 1 : 0;
  });
  return { pooled: langs.length ? all / langs.length : 0.5, perLanguage: Object.fromEntries(Object.keys(n).sort().map((l) => [l, pos[l] / n[l]])) };
}

/** Predictions of one language in one score bin [bin/bins, (bin+1)/bins): moderator-labeled toxic, benign, and unlabeled. */
export interface ScoreBin {
  bin: number;
  toxic: number;
  benign: number;
  unlabeled: number;
}

/**
 * The toxic share of a language's traffic estimated from feedback, corrected for which predictions moderators
 * review (they mostly see flagged ones): per score bin, the share toxic among its labeled predictions (smoothed
 * towards the bin's calibrated score with one pseudo-label), weighted by ALL predictions in the bin.
 *
 *   share = sum_b N_b (T_b + p_b) / (L_b + 1) / sum_b N_b        p_b = the bin's middle score
 */
export function estimatePrevalence(bins: readonly ScoreBin[], nBins: number): { predictions: number; labeled: number; share: number | null } {
  let total = 0, labeled = 0, expected = 0;
  for (const b of bins) {
    const n = b.toxic + b.benign + b.unlabeled;
    const mid = (b.bin + 0.5) / nBins;
    total += n;
    labeled += b.toxic + b.benign;
    expected += (n * (b.toxic + mid)) / (b.toxic + b.benign + 1);
  }
  return { predictions: total, labeled, share: total === 0 ? null : expected / total };
}
