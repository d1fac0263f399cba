/**
 * The linear head: feature transform -> weights . row + bias (the logit) -> calibration (per language,
 * else pooled) -> threshold (per language, else pooled) -> decision.
 *
 *   row   = transform(features, lang)     sparse, nCols = |parts| * dSae (+ languages)
 *   logit = weights . row + bias           weights: float32 [nCols]
 *   p     = calibrator(lang)(logit)        Platt or temperature
 *   toxic = p >= threshold(lang)
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
import { thresholdFor, type ThresholdTable } from './thresholds.js';

export const HEAD_FORMAT = 'toxscope-head';
export const HEAD_FORMAT_VERSION = 1;

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
}

export class Head {
  readonly transform: FeatureTransform;
  readonly weights: Float32Array;
  readonly bias: number;
  readonly calibration: CalibrationTable;
  readonly thresholds: Readonly<ThresholdTable>;
  readonly meta: Record<string, unknown>;

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
  }

  score(f: TextFeatures, lang?: string): HeadScore {
    const row = this.transform.row(f, lang);
    let logit = this.bias;
    for (let k = 0; k < row.indices.length; k++) logit += this.weights[row.indices[k]] * row.values[k];
    const cal = calibratorFor(this.calibration, lang);
    const probability = calibratedProbability(cal.calibrator, logit);
    const { threshold, languageUsed } = thresholdFor(this.thresholds, lang);
    return {
      logit, probability, threshold, toxic: probability >= threshold, languageUsed, calibrationUsed: cal.languageUsed,
      contributions: (topN = 10) => this.contributions(f, row, topN),
    };
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
    return { transform: this.transform, weights: this.weights, bias: this.bias, calibration: this.calibration, thresholds: this.thresholds, meta: this.meta };
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
        calibration: j.calibration, thresholds: j.thresholds, meta: j.meta,
      });
    } catch (e) {
      if (e instanceof Error && !e.message.startsWith(source)) throw formatError(`${source}: ${e.message}`);
      throw e;
    }
  }
}

const finite = z.number().refine(Number.isFinite, 'expected a finite number');
const probability = z.number().min(0).max(1);
const calibratorSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('platt'), a: finite, b: finite }),
  z.object({ kind: z.literal('temperature'), temperature: z.number().positive().refine(Number.isFinite, 'expected a finite number') }),
]);

export const headSchema = z.object({
  format: z.literal(HEAD_FORMAT),
  version: z.literal(HEAD_FORMAT_VERSION),
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
