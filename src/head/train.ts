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
import { calibratedProbability, calibratorFor, fitCalibration, type CalibrationMethod } from './calibration.js';
import { fitDiscoveryRule, type DiscoveryRule, type FeatureBias } from './discovery.js';
import { evaluateHead, evaluateRule, type LabeledSet } from './evaluate.js';
import { FeatureTransform, type TransformOptions } from './features.js';
import { type GroupPolicy } from './groups.js';
import { Head } from './head.js';
import { fitLogistic, sigmoid, type LogisticOptions } from './logistic.js';
import { metricsByLanguage, type MetricsReport } from './metrics.js';
import { matVec } from './sparse.js';
import { stratifiedSplit } from './split.js';
import { chooseThresholds, type ThresholdChoice, type ThresholdObjective } from './thresholds.js';

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
  const calibrationFraction = options.calibrationFraction ?? 0.25;
  const { train: trIdx, holdout: caIdx } = stratifiedSplit(input.labels, input.langs, calibrationFraction, seed);
  const tr = subset(input, trIdx), ca = subset(input, caIdx);
  if (ca.features.length === 0) throw validationError('train: the calibration split is empty; add data or raise calibrationFraction');

  // 2. transform and logistic regression on the train part:  X: [N_train, nCols]
  const transform = FeatureTransform.fit(tr.features, input.dSae, options.transform, tr.langs);
  const X = transform.matrix(tr.features, tr.langs);
  const lrStarted = performance.now();
  const fit = fitLogistic(X, tr.labels, options.logistic);
  const lrSeconds = (performance.now() - lrStarted) / 1000;

  // 3. calibration and thresholds on the calibration part
  const logits = matVec(transform.matrix(ca.features, ca.langs), fit.weights, fit.bias); // [N_cal]
  const calibration = fitCalibration(logits, ca.labels, ca.langs, { method: options.calibration?.method, ...options.groups });
  const probs = logits.map((z, i) => calibratedProbability(calibratorFor(calibration, ca.langs[i]).calibrator, z));
  const { table, choices } = chooseThresholds(probs, ca.labels, ca.langs, options.thresholds ?? { mode: 'f1' }, options.groups);
  const head = new Head({ transform, weights: fit.weights, bias: fit.bias, calibration, thresholds: table, meta: options.meta });
  const discovery = fitDiscoveryRule(tr, ca, input.dSae, { ...options.groups, maxK: options.discovery?.maxK });

  // 4. report
  const report: TrainReport = {
    split: { seed, calibrationFraction, train: trIdx.length, calibration: caIdx.length, perLanguage: languageCounts(tr, ca) },
    logistic: { solver: fit.solver, iterations: fit.iterations, converged: fit.converged, objective: fit.objective, nonZero: fit.nonZero, columns: transform.nCols, seconds: lrSeconds },
    ownCalibration: Object.keys(calibration.perLanguage),
    thresholds: choices,
    uncalibrated: metricsByLanguage({ labels: ca.labels, scores: logits.map(sigmoid), predicted: logits.map((z) => (z >= 0 ? 1 : 0)), langs: ca.langs }),
    calibrated: evaluateHead(head, ca),
    rule: evaluateRule(discovery.rule, ca),
    seconds: (performance.now() - started) / 1000,
  };
  return { head, rule: discovery.rule, rankings: discovery.rankings, split: { train: trIdx, calibration: caIdx }, report };
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
