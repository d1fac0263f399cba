/**
 * Calibration: maps the linear head's logit z to P(toxic), fitted on a held-out split.
 *
 *   platt        p = sigmoid(a z + b)   (fitted with Platt's smoothed targets
 *                                        t+ = (N+ + 1) / (N+ + 2), t- = 1 / (N- + 2))
 *   temperature  p = sigmoid(z / T)      (T > 0; cannot move the decision boundary, so it cannot undo
 *                                        the prior shift that 'balanced' class weights introduce)
 *
 * Both minimise the log-loss by Newton's method with backtracking (the problems are convex in
 * (a, b) and in 1/T). A language gets its own calibrator when it has enough data on the split
 * (GroupPolicy: default 200 texts with at least 20 of each class); others use the pooled one.
 */
import { validationError } from '../errors.js';
import { sigmoid } from './logistic.js';
import { groupByLanguage, hasEnoughData, pick, type GroupPolicy } from './groups.js';

export type CalibrationMethod = 'platt' | 'temperature';
export type Calibrator = { kind: 'platt'; a: number; b: number } | { kind: 'temperature'; temperature: number };

export interface CalibrationTable {
  method: CalibrationMethod;
  pooled: Calibrator;
  perLanguage: Record<string, Calibrator>;
}

export const IDENTITY: Calibrator = { kind: 'platt', a: 1, b: 0 };

/** The calibrated logit a z + b, or z / T. */
export function calibratedLogit(c: Calibrator, z: number): number {
  return c.kind === 'platt' ? c.a * z + c.b : z / c.temperature;
}

export function calibratedProbability(c: Calibrator, z: number): number {
  return sigmoid(calibratedLogit(c, z));
}

/** The calibrator for a language (its own, else pooled) and which one was used. */
export function calibratorFor(table: CalibrationTable, lang: string | undefined): { calibrator: Calibrator; languageUsed: string } {
  const own = lang === undefined ? undefined : table.perLanguage[lang];
  return own ? { calibrator: own, languageUsed: lang! } : { calibrator: table.pooled, languageUsed: 'pooled' };
}

export function fitCalibrator(method: CalibrationMethod, logits: ArrayLike<number>, labels: ArrayLike<number>): Calibrator {
  return method === 'platt' ? fitPlatt(logits, labels) : fitTemperature(logits, labels);
}

export function fitCalibration(
  logits: ArrayLike<number>, labels: ArrayLike<number>, langs: readonly string[],
  options: { method?: CalibrationMethod } & GroupPolicy = {},
): CalibrationTable {
  const method = options.method ?? 'platt';
  if (logits.length !== labels.length || langs.length !== labels.length) {
    throw validationError(`calibration: ${logits.length} logits, ${labels.length} labels, ${langs.length} languages`);
  }
  const perLanguage: Record<string, Calibrator> = {};
  for (const [lang, idx] of groupByLanguage(langs)) {
    if (hasEnoughData(labels, idx, options)) perLanguage[lang] = fitCalibrator(method, pick(logits, idx), pick(labels, idx));
  }
  return { method, pooled: fitCalibrator(method, logits, labels), perLanguage };
}

/** Platt scaling: (a, b) minimising the log-loss of sigmoid(a z + b) against smoothed targets. */
export function fitPlatt(logits: ArrayLike<number>, labels: ArrayLike<number>): Calibrator {
  const n = logits.length;
  let nPos = 0;
  for (let i = 0; i < n; i++) nPos += labels[i] === 1 ? 1 : 0;
  if (n === 0) throw validationError('calibration: no texts to fit on');
  const tPos = (nPos + 1) / (nPos + 2), tNeg = 1 / (n - nPos + 2);
  const t = Float64Array.from({ length: n }, (_, i) => (labels[i] === 1 ? tPos : tNeg));
  const loss = (a: number, b: number) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += logLoss(a * logits[i] + b, t[i]);
    return s;
  };
  let a = 1, b = 0, f = loss(a, b);
  for (let iter = 0; iter < 100; iter++) {
    let ga = 0, gb = 0, haa = 1e-12, hab = 0, hbb = 1e-12;
    for (let i = 0; i < n; i++) {
      const z = logits[i], p = sigmoid(a * z + b), r = p - t[i], w = p * (1 - p);
      ga += r * z; gb += r;
      haa += w * z * z; hab += w * z; hbb += w;
    }
    if (Math.max(Math.abs(ga), Math.abs(gb)) < 1e-9 * n) break;
    const det = haa * hbb - hab * hab;
    let da = -(hbb * ga - hab * gb) / det, db = -(haa * gb - hab * ga) / det;
    if (!Number.isFinite(da) || !Number.isFinite(db)) { da = -ga; db = -gb; }
    let step = 1, accepted = false;
    for (let k = 0; k < 50; k++, step /= 2) {
      const fNew = loss(a + step * da, b + step * db);
      if (fNew <= f + 1e-4 * step * (ga * da + gb * db)) { a += step * da; b += step * db; f = fNew; accepted = true; break; }
    }
    if (!accepted) break;
  }
  return { kind: 'platt', a, b };
}

/** Temperature scaling: T > 0 minimising the log-loss of sigmoid(z / T). */
export function fitTemperature(logits: ArrayLike<number>, labels: ArrayLike<number>): Calibrator {
  const n = logits.length;
  if (n === 0) throw validationError('calibration: no texts to fit on');
  const loss = (inv: number) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += logLoss(inv * logits[i], labels[i]);
    return s;
  };
  const MIN_INV = 1e-6; // T at most 1e6: an uninformative logit maps to p = 0.5
  let inv = 1, f = loss(inv);
  for (let iter = 0; iter < 100; iter++) {
    let g = 0, h = 1e-12;
    for (let i = 0; i < n; i++) {
      const z = logits[i], p = sigmoid(inv * z);
      g += (p - labels[i]) * z;
      h += p * (1 - p) * z * z;
    }
    if (Math.abs(g) < 1e-9 * n) break;
    const d = -g / h;
    let step = 1, accepted = false;
    for (let k = 0; k < 50; k++, step /= 2) {
      const next = Math.max(MIN_INV, inv + step * d);
      const fNew = loss(next);
      if (fNew <= f + 1e-4 * g * (next - inv)) { accepted = next !== inv; inv = next; f = fNew; break; }
    }
    if (!accepted) break;
  }
  return { kind: 'temperature', temperature: 1 / inv };
}

/** -[t log sigmoid(u) + (1 - t) log(1 - sigmoid(u))], computed stably. */
function logLoss(u: number, t: number): number {
  const softplus = u > 0 ? u + Math.log1p(Math.exp(-u)) : Math.log1p(Math.exp(u));
  return softplus - t * u;
}
