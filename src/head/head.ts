/**
 * The linear head: feature transform -> weights . row + bias (the logit) -> calibration (per language,
 * else pooled) -> prior shift -> threshold (per language, else pooled) -> decision.
 *
 *   row   = transform(features, lang)     sparse, nCols = |parts| * dSae (+ languages)
 *   z     = weights . row + bias           weights: float32 [nCols]
 *   logit = max(z(text), z(sentence_1), ..., z(sentence_m), z(window_1) - d, ...)   with pooling 'max-segment'
 *                                         (the default; 'sentences' leaves z(text) out when there are parts): the
 *                                         most toxic part decides, so padding cannot dilute it; calibration is
 *                                         fitted on this max. d = windowOffset (default 0; trainHead can fit it): a
 *                                         window is a fragment of a sentence, and fragments of benign sentences can
 *                                         score higher than whole ones. A text of one sentence has no parts.
 *   p     = sigmoid(calibrator(lang)(logit) + logit(pi_deploy) - logit(pi_sample))   (src/head/prior.ts)
 *   toxic = p >= threshold(lang)
 *
 * The calibration split's pooled logits and labels travel with the head (`curve`), so a new deployment
 * prevalence re-chooses thresholds without the training data (withPrevalence).
 *
 * A Head is immutable: `withThresholds` returns a new Head, so a running service swaps thresholds by
 * replacing one reference (atomic for every request already holding the old one).
 * JSON: { format: "toxscope-head", version: 1, ... } validated by a zod schema on load.
 */
import { z } from 'zod';
import { formatError, validationError } from '../errors.js';
import type { TextFeatures } from './text-features.js';
import { calibratedProbability, calibratorFor, type CalibrationTable } from './calibration.js';
import { FEATURE_PARTS, FeatureTransform, type FeaturePart } from './features.js';
import { decodeF32, describeZodError, encodeF32, f32ArraySchema } from './encoding.js';
import { priorShift, priorWeight, type Prior } from './prior.js';
import { calibratedLogit } from './calibration.js';
import { sigmoid } from './logistic.js';
import { chooseThresholds, thresholdFor, type ThresholdObjective, type ThresholdTable } from './thresholds.js';
import type { GroupPolicy } from './groups.js';
import { combine, type Combiner } from './combiner.js';

export const HEAD_FORMAT = 'toxscope-head';
/** 2 added pooling, prior and curve (all optional: version 1 heads load as 'whole' with no prior shift) */
export const HEAD_FORMAT_VERSION = 2;

/**
 * whole        the text's own logit
 * max-segment  max over the text and each of its sentences
 * sentences    max over its sentences and windows (the text's own logit only when it is one sentence): long
 *              benign texts are never scored as one long bag of features, and a text embedded among others keeps
 *              exactly the parts (and so the score) it had alone when its sentences are punctuated
 * combined     a w + b max(w, parts) + c sqrt(2 ln(1 + number of parts)) + d, fitted on the calibration split and on its
 *              texts embedded among benign ones (src/head/combiner.ts): the max keeps the most toxic part decisive,
 *              the count term prices in that a max over many benign parts grows with their number
 */
export const POOLINGS = ['max-segment', 'combined', 'sentences', 'whole'] as const;
export type Pooling = (typeof POOLINGS)[number];

/** The calibration split, kept to re-choose thresholds: pooled logits, labels, languages. */
export interface OperatingCurve {
  objective: ThresholdObjective;
  groups: GroupPolicy;
  logits: Float32Array;
  labels: Uint8Array;
  langs: string[];
}

export interface Contribution {
  /** SAE feature id */
  feature: number;
  part: FeaturePart;
  weight: number;
  /** the transformed value in the row */
  value: number;
  /** weight x value: its share of the logit */
  contribution: number;
  /** the feature's firing rate in the text (count / nTokens) */
  firingRate: number;
}

export interface HeadScore {
  /** uncalibrated logit weights . row + bias */
  logit: number;
  /** calibrated P(toxic) */
  probability: number;
  threshold: number;
  toxic: boolean;
  /** whose threshold decided: the language's own, or 'pooled' */
  languageUsed: string;
  /** whose calibrator mapped the logit: the language's own, or 'pooled' */
  calibrationUsed: string;
  /** which part decided with max-segment pooling: -1 the whole text, else the index of the sentence */
  segment: number;
  /** the topN largest |weight x value| terms of the logit (language one-hot terms are left out) */
  contributions(topN?: number): Contribution[];
}

export interface HeadParts {
  transform: FeatureTransform;
  /** float32 [transform.nCols] */
  weights: Float32Array;
  bias: number;
  calibration: CalibrationTable;
  thresholds: ThresholdTable;
  /** free-form provenance (training data digest, metrics, ...) carried through JSON */
  meta?: Record<string, unknown>;
  /** default 'whole' */
  pooling?: Pooling;
  prior?: Prior;
  curve?: OperatingCurve;
  /** subtracted from every window's logit before the max (default 0) */
  windowOffset?: number;
  /** pooling 'combined' only: its fitted weights */
  combiner?: Combiner;
}

export class Head {
  readonly transform: FeatureTransform;
  readonly weights: Float32Array;
  readonly bias: number;
  readonly calibration: CalibrationTable;
  readonly thresholds: Readonly<ThresholdTable>;
  readonly meta: Record<string, unknown>;
  readonly pooling: Pooling;
  readonly prior: Prior | undefined;
  readonly curve: OperatingCurve | undefined;
  readonly windowOffset: number;
  readonly combiner: Combiner | undefined;

  constructor(parts: HeadParts) {
    if (parts.weights.length !== parts.transform.nCols) {
      throw validationError(`head: ${parts.weights.length} weights for ${parts.transform.nCols} transform columns`);
    }
    if (!Number.isFinite(parts.bias)) throw validationError(`head: bias is ${parts.bias}`);
    checkThresholds(parts.thresholds);
    this.transform = parts.transform;
    this.weights = parts.weights;
    this.bias = parts.bias;
    this.calibration = parts.calibration;
    this.thresholds = Object.freeze({ pooled: parts.thresholds.pooled, perLanguage: Object.freeze({ ...parts.thresholds.perLanguage }) });
    this.meta = parts.meta ?? {};
    this.pooling = parts.pooling ?? 'whole';
    this.prior = parts.prior;
    this.curve = parts.curve;
    this.windowOffset = parts.windowOffset ?? 0;
    if (!Number.isFinite(this.windowOffset)) throw validationError(`head: windowOffset is ${parts.windowOffset}`);
    this.combiner = parts.combiner;
    if (this.pooling === 'combined' && !this.combiner) throw validationError("head: pooling 'combined' needs its combiner's weights");
  }

  /** The pooled logit (before calibration) and which part gave it (-1: the whole text). */
  pooledLogit(f: TextFeatures, lang?: string): { logit: number; segment: number; features: TextFeatures; row: { indices: Int32Array; values: Float32Array } } {
    const whole = this.rowLogit(f, lang);
    let best = { logit: whole.z, segment: -1, features: f, row: whole.row };
    if (this.pooling === 'whole') return best;
    const parts = this.scoredParts(f, lang);
    if (this.pooling === 'sentences' && parts.length > 0) best.logit = -Infinity;
    for (const p of parts) if (p.z > best.logit) best = { logit: p.z, segment: p.index, features: p.features, row: p.row };
    if (this.pooling === 'combined') best.logit = combine(this.combiner!, { whole: whole.z, parts: parts.map((p) => p.z) });
    return best;
  }

  /** The unpooled logit weights . row + bias of one text or part. */
  rowLogit(g: TextFeatures, lang?: string): { z: number; row: { indices: Int32Array; values: Float32Array } } {
    const row = this.transform.row(g, lang);
    let z = this.bias;
    for (let k = 0; k < row.indices.length; k++) z += this.weights[row.indices[k]] * row.values[k];
    return { z, row };
  }

  /**
   * The logits of a text's parts (sentences, then windows less the window offset), none for a text of one
   * sentence (fewer than two non-empty segments).
   */
  scoredParts(f: TextFeatures, lang?: string): { index: number; z: number; features: TextFeatures; row: { indices: Int32Array; values: Float32Array } }[] {
    const segments = f.segments?.filter((g) => g.nTokens > 0).length ?? 0;
    if (!f.segments || segments <= 1) return [];
    const windowsFrom = f.windowsFrom ?? f.segments.length;
    return f.segments.flatMap((g, i) => {
      if (g.nTokens === 0) return [];
      const s = this.rowLogit(g, lang);
      return [{ index: i, z: i >= windowsFrom ? s.z - this.windowOffset : s.z, features: g, row: s.row }];
    });
  }

  /** Calibrated probability of a pooled logit for a language, at the deployment's prevalence. */
  probabilityOf(logit: number, lang?: string): { probability: number; calibrationUsed: string } {
    const cal = calibratorFor(this.calibration, lang);
    const shift = priorShift(this.prior, cal.languageUsed, lang);
    return { probability: shift === 0 ? calibratedProbability(cal.calibrator, logit) : sigmoid(calibratedLogit(cal.calibrator, logit) + shift), calibrationUsed: cal.languageUsed };
  }

  score(f: TextFeatures, lang?: string): HeadScore {
    const best = this.pooledLogit(f, lang);
    const { probability, calibrationUsed } = this.probabilityOf(best.logit, lang);
    const { threshold, languageUsed } = thresholdFor(this.thresholds, lang);
    return {
      logit: best.logit, probability, threshold, toxic: probability >= threshold, languageUsed, calibrationUsed, segment: best.segment,
      contributions: (topN = 10) => this.contributions(best.features, best.row, topN),
    };
  }

  /**
   * A new Head for another deployment prevalence: `pooled` or a language code sets that share of toxic texts
   * (null removes a language's own, which then follows pooled). Probabilities shift at once; thresholds are
   * re-chosen on the stored calibration curve for the same objective (F1 or a target precision) at the new
   * prevalence, replacing any set by hand. A head without a curve (format 1) cannot do this.
   */
  withPrevalence(changes: Record<string, number | null>): Head {
    if (!this.prior || !this.curve) throw validationError('prevalence: this head carries no calibration curve (retrain it with this version to set a prevalence)');
    const deployment = { pooled: this.prior.deployment.pooled, perLanguage: { ...this.prior.deployment.perLanguage } };
    for (const [key, value] of Object.entries(changes)) {
      if (value !== null && !(typeof value === 'number' && value > 0 && value < 1)) throw validationError(`prevalence: ${key} must be a share strictly between 0 and 1, got ${value}`);
      if (key === 'pooled') {
        if (value === null) delete deployment.pooled;
        else deployment.pooled = value;
      } else if (value === null) delete deployment.perLanguage[key];
      else deployment.perLanguage[key] = value;
    }
    const prior: Prior = { sample: this.prior.sample, deployment };
    const shifted = new Head({ ...this.parts(), prior });
    return new Head({ ...shifted.parts(), thresholds: shifted.thresholdsFromCurve(this.curve).table });
  }

  /** Thresholds chosen on the stored calibration split at this head's prior, for the curve's objective. */
  thresholdsFromCurve(curve: OperatingCurve): ReturnType<typeof chooseThresholds> {
    const probs: number[] = [], weights: number[] = [];
    curve.langs.forEach((lang, i) => {
      const p = this.probabilityOf(curve.logits[i], lang);
      probs.push(p.probability);
      weights.push(priorWeight(this.prior, p.calibrationUsed, lang, curve.labels[i]));
    });
    return chooseThresholds(probs, curve.labels, curve.langs, curve.objective, curve.groups, weights);
  }

  private contributions(f: TextFeatures, row: { indices: Int32Array; values: Float32Array }, topN: number): Contribution[] {
    const { dSae, parts } = this.transform;
    const out: Contribution[] = [];
    for (let k = 0; k < row.indices.length; k++) {
      const col = row.indices[k];
      const block = Math.floor(col / dSae);
      const weight = this.weights[col];
      if (block >= parts.length || weight === 0) continue;
      const feature = col - block * dSae;
      out.push({ feature, part: parts[block], weight, value: row.values[k], contribution: weight * row.values[k], firingRate: 0 });
    }
    out.sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution) || a.feature - b.feature);
    const top = out.slice(0, topN);
    for (const c of top) c.firingRate = f.rates[lowerBound(f.ids, c.feature)];
    return top;
  }

  /**
   * A new Head with some thresholds replaced: `pooled` sets the pooled one, a language code sets that
   * language's, null removes a language's own threshold (it falls back to pooled). Values in [0, 1].
   */
  withThresholds(changes: Record<string, number | null>): Head {
    const next: ThresholdTable = { pooled: this.thresholds.pooled, perLanguage: { ...this.thresholds.perLanguage } };
    for (const [key, value] of Object.entries(changes)) {
      if (key === 'pooled') {
        if (value === null) throw validationError('thresholds: the pooled threshold cannot be removed');
        next.pooled = value;
      } else if (value === null) delete next.perLanguage[key];
      else next.perLanguage[key] = value;
    }
    return new Head({ ...this.parts(), thresholds: next });
  }

  private parts(): HeadParts {
    return {
      transform: this.transform, weights: this.weights, bias: this.bias, calibration: this.calibration, thresholds: this.thresholds, meta: this.meta,
      pooling: this.pooling, prior: this.prior, curve: this.curve, windowOffset: this.windowOffset, combiner: this.combiner,
    };
  }

  toJSON(): HeadJson {
    const t = this.transform;
    return {
      format: HEAD_FORMAT,
      version: HEAD_FORMAT_VERSION,
      transform: { dSae: t.dSae, parts: [...t.parts], normalize: t.normalize, languages: [...t.languages], idf: encodeF32(t.idf, false) },
      weights: encodeF32(this.weights),
      bias: this.bias,
      calibration: this.calibration,
      thresholds: { pooled: this.thresholds.pooled, perLanguage: { ...this.thresholds.perLanguage } },
      meta: this.meta,
      pooling: this.pooling,
      ...(this.windowOffset !== 0 && { window_offset: this.windowOffset }),
      ...(this.combiner && { combiner: this.combiner }),
      ...(this.prior && { prior: this.prior }),
      ...(this.curve && {
        curve: {
          objective: this.curve.objective, groups: this.curve.groups, logits: encodeF32(this.curve.logits, false),
          labels: [...this.curve.labels].map((l) => (l === 1 ? 1 : 0) as 0 | 1), langs: encodeLangs(this.curve.langs),
        },
      }),
    };
  }

  /** Validates and loads a head; errors name `source` and the offending field. */
  static fromJSON(json: unknown, source = 'head'): Head {
    const parsed = headSchema.safeParse(json);
    if (!parsed.success) throw formatError(describeZodError(source, parsed.error));
    const j = parsed.data;
    try {
      const transform = new FeatureTransform({
        dSae: j.transform.dSae, parts: j.transform.parts, normalize: j.transform.normalize,
        languages: j.transform.languages, idf: decodeF32(j.transform.idf, `${source}: transform.idf`),
      });
      return new Head({
        transform, weights: decodeF32(j.weights, `${source}: weights`), bias: j.bias,
        calibration: j.calibration, thresholds: j.thresholds, meta: j.meta, pooling: j.pooling, prior: j.prior, windowOffset: j.window_offset, combiner: j.combiner,
        curve: j.curve && decodeCurve(j.curve, source),
      });
    } catch (e) {
      if (e instanceof Error && !e.message.startsWith(source)) throw formatError(`${source}: ${e.message}`);
      throw e;
    }
  }
}

const finite = z.number().refine(Number.isFinite, 'expected a finite number');
const probability = z.number().min(0).max(1);
const share = z.number().gt(0).lt(1);
const calibratorSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('platt'), a: finite, b: finite }),
  z.object({ kind: z.literal('temperature'), temperature: z.number().positive().refine(Number.isFinite, 'expected a finite number') }),
]);

export const headSchema = z.object({
  format: z.literal(HEAD_FORMAT),
  version: z.union([z.literal(1), z.literal(HEAD_FORMAT_VERSION)]),
  transform: z.object({
    dSae: z.number().int().positive(),
    parts: z.array(z.enum(FEATURE_PARTS)).min(1),
    normalize: z.boolean(),
    languages: z.array(z.string()),
    idf: f32ArraySchema,
  }),
  weights: f32ArraySchema,
  bias: finite,
  calibration: z.object({
    method: z.enum(['platt', 'temperature']),
    pooled: calibratorSchema,
    perLanguage: z.record(z.string(), calibratorSchema),
  }),
  thresholds: z.object({ pooled: probability, perLanguage: z.record(z.string(), probability) }),
  meta: z.record(z.string(), z.unknown()).optional(),
  pooling: z.enum(POOLINGS).optional(),
  window_offset: finite.optional(),
  combiner: z.object({ whole: finite, max: finite, parts: finite, bias: finite }).optional(),
  prior: z.object({
    sample: z.object({ pooled: share, perLanguage: z.record(z.string(), share) }),
    deployment: z.object({ pooled: share.optional(), perLanguage: z.record(z.string(), share) }),
  }).optional(),
  curve: z.object({
    objective: z.discriminatedUnion('mode', [z.object({ mode: z.literal('f1') }), z.object({ mode: z.literal('macro-f1') }), z.object({ mode: z.literal('precision'), target: z.number().gt(0).max(1) })]),
    groups: z.object({ minSamples: z.number().int().nonnegative().optional(), minPerClass: z.number().int().nonnegative().optional() }),
    logits: f32ArraySchema,
    labels: z.array(z.union([z.literal(0), z.literal(1)])),
    /** { names, index }: index[i] is text i's language in names */
    langs: z.object({ names: z.array(z.string()), index: z.array(z.number().int().nonnegative()) }),
  }).optional(),
});
export type HeadJson = z.infer<typeof headSchema>;

function checkThresholds(t: ThresholdTable): void {
  for (const [lang, v] of [['pooled', t.pooled] as const, ...Object.entries(t.perLanguage)]) {
    if (!(typeof v === 'number' && v >= 0 && v <= 1)) throw validationError(`thresholds: ${lang} threshold must be a number in [0, 1], got ${v}`);
  }
}

function lowerBound(ids: Int32Array, id: number): number {
  let lo = 0, hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ids[mid] < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function encodeLangs(langs: readonly string[]): { names: string[]; index: number[] } {
  const names = [...new Set(langs)].sort();
  const at = new Map(names.map((n, i) => [n, i]));
  return { names, index: langs.map((l) => at.get(l)!) };
}

function decodeCurve(j: NonNullable<HeadJson['curve']>, source: string): OperatingCurve {
  const logits = decodeF32(j.logits, `${source}: curve.logits`);
  if (j.labels.length !== logits.length || j.langs.index.length !== logits.length)
    throw formatError(`${source}: curve: ${logits.length} logits, ${j.labels.length} labels, ${j.langs.index.length} languages`);
  const langs = j.langs.index.map((i) => {
    const name = j.langs.names[i];
    if (name === undefined) throw formatError(`${source}: curve.langs.index holds ${i}, past the ${j.langs.names.length} names`);
    return name;
  });
  return { objective: j.objective, groups: j.groups, logits, labels: Uint8Array.from(j.labels), langs };
}
