/**
 * Training a head, purely: no files, no model. Given per-text SAE features, labels and languages:
 *
 *   1. seeded stratified split (per language and label) into train and calibration parts
 *   2. fit the feature transform (idf) on train; logistic regression on train rows
 *   3. on the calibration part: per-language calibrators, then per-language thresholds on the
 *      calibrated probabilities; discovery ranking on train with K chosen on calibration
 *   4. report: split sizes, solver stats, and metrics on the calibration part per language, for the
 *      uncalibrated head (sigmoid(logit) at 0.5), the calibrated head, and the discovery rule
 *
 * The calibration-part metrics are out-of-sample for the weights and the rule's ranking, in-sample for
 * the calibrators, thresholds and K (a few parameters per language); held-out data is the place for
 * final numbers (evaluateHead / evaluateRule).
 */
import { validationError } from '../errors.js';
import { calibratedLogit, fitCalibration, fitCalibrator, type CalibrationMethod } from './calibration.js';
import { fitDiscoveryRule, type DiscoveryRule, type FeatureBias } from './discovery.js';
import { evaluateHead, evaluateRule, type LabeledSet } from './evaluate.js';
import { FeatureTransform, type TransformOptions } from './features.js';
import { type GroupPolicy } from './groups.js';
import { Head, type OperatingCurve, type Pooling } from './head.js';
import { combine, combinerSamples, type Combiner, type DilutionPoint, dilutionPoints, dilutionShortfall, missesLess } from './combiner.js';
import { thresholdFor } from './thresholds.js';
import { sampleShares, type Prior, type PrevalenceTable } from './prior.js';
import { fitLogistic, sigmoid, type LogisticOptions } from './logistic.js';
import { metricsByLanguage, type MetricsReport } from './metrics.js';
import { stratifiedSplit } from './split.js';
import type { ThresholdChoice, ThresholdObjective } from './thresholds.js';

/** Share of each (language, label) stratum held out for calibration. */
export const DEFAULT_CALIBRATION_FRACTION = 0.25;

export interface TrainInput extends LabeledSet {
  /** the SAE width: feature ids are in [0, dSae) */
  dSae: number;
}

export interface TrainOptions {
  /** seed of the train/calibration split (default 0) */
  seed?: number;
  /** share of each (language, label) stratum held out for calibration (default 0.25) */
  calibrationFraction?: number;
  transform?: TransformOptions;
  logistic?: LogisticOptions;
  calibration?: { method?: CalibrationMethod };
  /** default { mode: 'f1' } */
  thresholds?: ThresholdObjective;
  /** when a language gets its own calibrator, threshold and rule (default 200 texts, 20 per class) */
  groups?: GroupPolicy;
  discovery?: { maxK?: number };
  /** carried into head.meta */
  meta?: Record<string, unknown>;
  /** 'max-segment' (default): the text's logit is the max over it and its parts (dilution-proof; src/head/head.ts) */
  pooling?: Pooling;
  /**
   * the deployment's toxic share per language ('pooled' for every other language): calibration shifts to it
   * and thresholds are chosen at it (src/head/prior.ts); default: the calibration split's own shares
   */
  prevalence?: Record<string, number>;
  /** a transform already fitted on these texts (several attribute heads share one) */
  fittedTransform?: FeatureTransform;
  /**
   * subtracted from window logits before the max (default 0); 'fit': the offset with the lowest log-loss on the
   * calibration split (fitWindowOffset). Measured on the demo (docs/dev-notes/2026-12-02/notes-13d.md): fitting gave
   * 1.5 logits, halved the benign rise among 30 friendly sentences and lost a third of the unpunctuated posts that
   * windows exist to keep, hence not the default.
   */
  windowOffset?: number | 'fit';
}

export interface LanguageCounts {
  train: number;
  calibration: number;
  toxicTrain: number;
  toxicCalibration: number;
}

export interface TrainReport {
  split: { seed: number; calibrationFraction: number; train: number; calibration: number; perLanguage: Record<string, LanguageCounts> };
  logistic: { solver: string; iterations: number; converged: boolean; objective: number; nonZero: number; columns: number; seconds: number };
  /** languages with their own calibrator / threshold / rule; the rest use 'pooled' */
  ownCalibration: string[];
  thresholds: Record<string, ThresholdChoice>;
  /** on the calibration part: sigmoid(logit) thresholded at 0.5, before any calibration */
  uncalibrated: MetricsReport;
  /** on the calibration part: calibrated probabilities and the chosen thresholds */
  calibrated: MetricsReport;
  /** on the calibration part: the discovery rule */
  rule: MetricsReport;
  /** pooling 'combined': the parts penalty chosen and the dilution it gives on the calibration split's mixtures */
  dilution?: { penalty: number; points: DilutionPoint[]; tried: { penalty: number; points: DilutionPoint[] }[] };
  seconds: number;
}

export interface TrainResult {
  head: Head;
  rule: DiscoveryRule;
  rankings: { pooled: FeatureBias[]; perLanguage: Record<string, FeatureBias[]> };
  /** indices into the input */
  split: { train: number[]; calibration: number[] };
  report: TrainReport;
}

export function trainHead(input: TrainInput, options: TrainOptions = {}): TrainResult {
  const started = performance.now();
  const n = input.features.length;
  if (input.labels.length !== n || input.langs.length !== n) {
    throw validationError(`train: ${n} texts, ${input.labels.length} labels, ${input.langs.length} languages`);
  }
  const seed = options.seed ?? 0;
  const calibrationFraction = options.calibrationFraction ?? DEFAULT_CALIBRATION_FRACTION;
  const { train: trIdx, holdout: caIdx } = stratifiedSplit(input.labels, input.langs, calibrationFraction, seed);
  const tr = subset(input, trIdx), ca = subset(input, caIdx);
  if (ca.features.length === 0) throw validationError('train: the calibration split is empty; add data or raise calibrationFraction');

  // 2. transform and logistic regression on the train part:  X: [N_train, nCols]
  const transform = options.fittedTransform ?? FeatureTransform.fit(tr.features, input.dSae, options.transform, tr.langs);
  const X = transform.matrix(tr.features, tr.langs);
  const lrStarted = performance.now();
  const fit = fitLogistic(X, tr.labels, options.logistic);
  const lrSeconds = (performance.now() - lrStarted) / 1000;

  // 3. calibration on the calibration part's pooled logits (max over text and sentences), then the prior
  //    shift to the deployment's prevalence, then thresholds chosen at that prevalence
  const pooling = options.pooling ?? 'max-segment';
  const placeholder = { pooled: 0.5, perLanguage: {} };
  const identity = { method: 'platt' as const, pooled: { kind: 'platt' as const, a: 1, b: 0 }, perLanguage: {} };
  const windowOffset = options.windowOffset !== 'fit' ? (options.windowOffset ?? 0) : fitWindowOffset((d) => new Head({ transform, weights: fit.weights, bias: fit.bias, calibration: identity, thresholds: placeholder, pooling, windowOffset: d }), ca);
  const base = { transform, weights: fit.weights, bias: fit.bias, windowOffset };
  // calibration, prior and thresholds of a pooling on the calibration split's texts as they are
  const operate = (combiner?: Combiner) => {
    const unfitted = new Head({ ...base, calibration: identity, thresholds: placeholder, pooling, combiner });
    const logits = Float64Array.from(ca.features, (f, i) => unfitted.pooledLogit(f, ca.langs[i]).logit); // [N_cal]
    const calibration = fitCalibration(logits, ca.labels, ca.langs, { method: options.calibration?.method, ...options.groups });
    const sample = sampleShares(ca.labels, ca.langs);
    const prior: Prior = {
      sample: { pooled: sample.pooled, perLanguage: Object.fromEntries(Object.keys(calibration.perLanguage).map((l) => [l, sample.perLanguage[l]])) },
      deployment: prevalenceTable(options.prevalence),
    };
    const curve: OperatingCurve = {
      objective: options.thresholds ?? { mode: 'f1' }, groups: options.groups ?? {},
      logits: Float32Array.from(logits), labels: Uint8Array.from(ca.labels), langs: [...ca.langs],
    };
    const calibrated = new Head({ ...base, calibration, thresholds: placeholder, pooling, prior, curve, combiner });
    const { table, choices } = calibrated.thresholdsFromCurve(curve);
    return { head: new Head({ ...base, calibration, thresholds: table, meta: options.meta, pooling, prior, curve, combiner }), logits, calibration, choices };
  };
  const fitted: ReturnType<typeof operate> & { dilution?: TrainReport['dilution'] } = pooling === 'combined' ? fitPartsPenalty(new Head({ ...base, calibration: identity, thresholds: placeholder }), ca, seed, (c) => operate(c)) : operate();
  const { head, logits, calibration, choices } = fitted;
  const discovery = fitDiscoveryRule(tr, ca, input.dSae, { ...options.groups, maxK: options.discovery?.maxK });

  // 4. report
  const report: TrainReport = {
    split: { seed, calibrationFraction, train: trIdx.length, calibration: caIdx.length, perLanguage: languageCounts(tr, ca) },
    logistic: { solver: fit.solver, iterations: fit.iterations, converged: fit.converged, objective: fit.objective, nonZero: fit.nonZero, columns: transform.nCols, seconds: lrSeconds },
    ownCalibration: Object.keys(calibration.perLanguage),
    thresholds: choices,
    uncalibrated: metricsByLanguage({ labels: ca.labels, scores: logits.map(sigmoid), predicted: Uint8Array.from(logits, (z) => (z >= 0 ? 1 : 0)), langs: ca.langs }),
    calibrated: evaluateHead(head, ca),
    rule: evaluateRule(discovery.rule, ca),
    ...(fitted.dilution && { dilution: fitted.dilution }),
    seconds: (performance.now() - started) / 1000,
  };
  return { head, rule: discovery.rule, rankings: discovery.rankings, split: { train: trIdx, calibration: caIdx }, report };
}

/** Offsets tried for windows, in logits. */
export const WINDOW_OFFSETS = Array.from({ length: 17 }, (_, i) => i * 0.25);

/**
 * The window offset d (src/head/head.ts) with the lowest log-loss of the Platt-calibrated pooled logit
 * max(text, sentences, windows - d) on the calibration split, over WINDOW_OFFSETS (ties: the smallest). A window
 * is a fragment of a sentence: on a weak head fragments of benign sentences score higher than the sentence, and a
 * max over many of them flags every long benign text. The offset is what the calibration split says a window's
 * logit is worth beside a sentence's; 0 when no calibration text has windows.
 */
export function fitWindowOffset(headWith: (offset: number) => Head, ca: LabeledSet): number {
  const withWindows = ca.features.flatMap((f, i) => ((f.windowsFrom ?? f.segments?.length ?? 0) < (f.segments?.length ?? 0) ? [i] : []));
  if (withWindows.length === 0) return 0;
  let best = { offset: 0, loss: Infinity };
  for (const offset of WINDOW_OFFSETS) {
    const head = headWith(offset);
    const logits = ca.features.map((f, i) => head.pooledLogit(f, ca.langs[i]).logit);
    const c = fitCalibrator('platt', logits, ca.labels);
    let loss = 0;
    logits.forEach((z, i) => {
      const p = Math.min(1 - 1e-12, Math.max(1e-12, sigmoid(calibratedLogit(c, z))));
      loss -= ca.labels[i] === 1 ? Math.log(p) : Math.log(1 - p);
    });
    if (loss < best.loss - 1e-9) best = { offset, loss };
  }
  return best.offset;
}

/** Count penalties tried for pooling 'combined' (logits per unit of sqrt(2 ln(1 + parts))). */
export const PARTS_PENALTIES = Array.from({ length: 49 }, (_, i) => i / 16);

/**
 * Pooling 'combined' as max(text, parts) - c sqrt(2 ln(1 + parts)) (src/head/combiner.ts), with c chosen on the
 * calibration split by the dilution targets themselves: its texts alone and embedded among 3 and 30 benign texts
 * of the same split and language; for each c the whole calibration (Platt per language, prior, thresholds) is
 * refitted on the texts alone, then the c whose decisions miss DILUTION_TARGETS least wins, evasion before
 * over-flagging: a c that keeps the toxic texts flagged among padding beats one that flags fewer benign ones (where
 * no c meets every target, as on the demo's synthetic head, this leaves the plain max or close to it; ties: the
 * smallest c).
 * `head` gives the unpooled logits; `operate` calibrates and thresholds a combiner on the split.
 */
export function fitPartsPenalty<T extends { head: Head }>(head: Head, ca: LabeledSet, seed: number, operate: (c: Combiner) => T): T & { dilution: { penalty: number; points: DilutionPoint[]; tried: { penalty: number; points: DilutionPoint[] }[] } } {
  const samples = combinerSamples({
    features: ca.features, labels: ca.labels, langs: ca.langs,
    logit: (f, lang) => head.rowLogit(f, lang).z,
    partLogits: (f, lang) => head.scoredParts(f, lang).map((p) => p.z),
  }, seed);
  let best: { miss: { kept: number; rise: number }; op: T; penalty: number; points: DilutionPoint[] } | undefined;
  const tried: { penalty: number; points: DilutionPoint[] }[] = [];
  for (const penalty of PARTS_PENALTIES) {
    const combiner: Combiner = { whole: 0, max: 1, parts: -penalty, bias: 0 };
    const op = operate(combiner);
    const flagged = samples.map((s) => op.head.probabilityOf(combine(combiner, s), s.lang).probability >= thresholdFor(op.head.thresholds, s.lang).threshold);
    const points = dilutionPoints(samples, flagged);
    tried.push({ penalty, points });
    const miss = dilutionShortfall(points);
    if (!best || missesLess(miss, best.miss)) best = { miss, op, penalty, points };
  }
  return { ...best!.op, dilution: { penalty: best!.penalty, points: best!.points, tried } };
}

/** { pooled?: x, en: y, ... } -> a PrevalenceTable, every share checked to be in (0, 1). */
export function prevalenceTable(given: Record<string, number> | undefined): PrevalenceTable {
  const out: PrevalenceTable = { perLanguage: {} };
  for (const [key, v] of Object.entries(given ?? {})) {
    if (!(v > 0 && v < 1)) throw validationError(`prevalence: ${key} must be a share strictly between 0 and 1, got ${v}`);
    if (key === 'pooled') out.pooled = v;
    else out.perLanguage[key] = v;
  }
  return out;
}

function subset(d: LabeledSet, idx: number[]): LabeledSet {
  return { features: idx.map((i) => d.features[i]), labels: idx.map((i) => d.labels[i]), langs: idx.map((i) => d.langs[i]) };
}

function languageCounts(tr: LabeledSet, ca: LabeledSet): Record<string, LanguageCounts> {
  const out: Record<string, LanguageCounts> = {};
  const add = (d: LabeledSet, part: 'train' | 'calibration') => d.langs.forEach((l, i) => {
    const c = (out[l] ??= { train: 0, calibration: 0, toxicTrain: 0, toxicCalibration: 0 });
    c[part]++;
    if (d.labels[i] === 1) c[part === 'train' ? 'toxicTrain' : 'toxicCalibration']++;
  });
  add(tr, 'train');
  add(ca, 'calibration');
  return out;
}
