/**
 * Feature discovery, the Qwen-Scope method: rank SAE features by how much more often they fire on
 * toxic texts than on non-toxic ones, and a rule classifier built from the top of that ranking.
 *
 *   bias(j) = P(j fires | toxic) - P(j fires | non-toxic)       over a labeled set ("fires" = in ids)
 *   rule_K:  toxic  iff  any of the top-K features fires
 *   score:   (number of the top-K features that fire) / K       (a ranking score for ROC-AUC / PR-AUC;
 *                                                                 not a probability)
 *
 * Rankings are made on the training split, per language and pooled; K is chosen on a validation
 * split to maximise F1 (ties: the smaller K). A language gets its own rule when it has enough data
 * (GroupPolicy) on both splits; other and unknown languages use the pooled rule.
 */
import { z } from 'zod';
import { formatError, validationError } from '../errors.js';
import type { TextFeatures } from './text-features.js';
import { describeZodError } from './encoding.js';
import { groupByLanguage, hasEnoughData, pick, type GroupPolicy } from './groups.js';

export interface FeatureBias {
  feature: number;
  pToxic: number;
  pNonToxic: number;
  /** pToxic - pNonToxic */
  bias: number;
  /** texts of each class in which it fired */
  firedToxic: number;
  firedNonToxic: number;
}

export interface RuleSet {
  k: number;
  /** the top-K toxic-biased feature ids, most biased first */
  features: number[];
  /** F1 on the validation split at this K */
  validationF1: number;
}

export interface DiscoveryRuleState {
  pooled: RuleSet;
  perLanguage: Record<string, RuleSet>;
}

export interface RuleScore {
  /** fraction of the top-K features that fire */
  score: number;
  toxic: boolean;
  /** the top-K features that fired */
  firing: number[];
  languageUsed: string;
}

/** Features with bias > 0, most toxic-biased first (ties by id), at most `limit` of them. */
export function rankFeatures(features: readonly TextFeatures[], labels: ArrayLike<number>, dSae: number, limit = 1000): FeatureBias[] {
  if (features.length !== labels.length) throw validationError(`discovery: ${features.length} texts but ${labels.length} labels`);
  const firedPos = new Float64Array(dSae), firedNeg = new Float64Array(dSae);
  let nPos = 0;
  features.forEach((f, i) => {
    const target = labels[i] === 1 ? firedPos : firedNeg;
    nPos += labels[i] === 1 ? 1 : 0;
    for (const id of f.ids) {
      if (id < 0 || id >= dSae) throw validationError(`discovery: text ${i} has feature id ${id} outside [0, ${dSae})`);
      target[id]++;
    }
  });
  const nNeg = features.length - nPos;
  if (nPos === 0 || nNeg === 0) throw validationError(`discovery: both classes are needed (got ${nPos} toxic of ${features.length})`);
  const out: FeatureBias[] = [];
  for (let j = 0; j < dSae; j++) {
    const pToxic = firedPos[j] / nPos, pNonToxic = firedNeg[j] / nNeg;
    if (pToxic > pNonToxic) out.push({ feature: j, pToxic, pNonToxic, bias: pToxic - pNonToxic, firedToxic: firedPos[j], firedNonToxic: firedNeg[j] });
  }
  out.sort((a, b) => b.bias - a.bias || a.feature - b.feature);
  return out.slice(0, limit);
}

/** The K (1 <= K <= ranked.length) whose rule "any of the top K fires" has the best F1 on the texts. */
export function chooseK(ranked: readonly number[], features: readonly TextFeatures[], labels: ArrayLike<number>): { k: number; f1: number } {
  if (ranked.length === 0) return { k: 0, f1: 0 };
  const rankOf = new Map(ranked.map((id, r) => [id, r]));
  // a text is flagged by rule_K iff the best rank among its fired features is < K
  const posAt = new Float64Array(ranked.length), negAt = new Float64Array(ranked.length);
  let nPos = 0;
  features.forEach((f, i) => {
    nPos += labels[i] === 1 ? 1 : 0;
    let best = Infinity;
    for (const id of f.ids) {
      const r = rankOf.get(id);
      if (r !== undefined && r < best) best = r;
    }
    if (best !== Infinity) (labels[i] === 1 ? posAt : negAt)[best]++;
  });
  let tp = 0, fp = 0, bestK = 1, bestF1 = -1;
  for (let k = 1; k <= ranked.length; k++) {
    tp += posAt[k - 1];
    fp += negAt[k - 1];
    const f1 = tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + (nPos - tp));
    if (f1 > bestF1) { bestF1 = f1; bestK = k; }
  }
  return { k: bestK, f1: bestF1 };
}

export interface LabeledFeatures {
  features: readonly TextFeatures[];
  labels: ArrayLike<number>;
  langs: readonly string[];
}

export interface DiscoveryOptions extends GroupPolicy {
  /** the largest K considered (default 256) */
  maxK?: number;
}

/** Rankings on `train`, K per language (where there is enough data) and pooled on `validation`. */
export function fitDiscoveryRule(train: LabeledFeatures, validation: LabeledFeatures, dSae: number, options: DiscoveryOptions = {}): {
  rule: DiscoveryRule;
  rankings: { pooled: FeatureBias[]; perLanguage: Record<string, FeatureBias[]> };
} {
  const maxK = options.maxK ?? 256;
  const fit = (tr: LabeledFeatures, va: LabeledFeatures): { set: RuleSet; ranking: FeatureBias[] } => {
    const ranking = rankFeatures(tr.features, tr.labels, dSae, Math.max(maxK, 100));
    const candidates = ranking.slice(0, maxK).map((b) => b.feature);
    const { k, f1 } = chooseK(candidates, va.features, va.labels);
    return { set: { k, features: candidates.slice(0, k), validationF1: f1 }, ranking };
  };
  const pooled = fit(train, validation);
  const perLanguage: Record<string, RuleSet> = {};
  const rankings: Record<string, FeatureBias[]> = {};
  const valGroups = groupByLanguage(validation.langs);
  for (const [lang, idx] of groupByLanguage(train.langs)) {
    const vIdx = valGroups.get(lang) ?? [];
    if (!hasEnoughData(train.labels, idx, options) || !hasEnoughData(validation.labels, vIdx, options)) continue;
    const r = fit(subset(train, idx), subset(validation, vIdx));
    perLanguage[lang] = r.set;
    rankings[lang] = r.ranking;
  }
  return { rule: new DiscoveryRule({ pooled: pooled.set, perLanguage }), rankings: { pooled: pooled.ranking, perLanguage: rankings } };
}

function subset(d: LabeledFeatures, idx: number[]): LabeledFeatures {
  return { features: pick(d.features, idx), labels: pick(d.labels, idx), langs: pick(d.langs, idx) };
}

export class DiscoveryRule {
  readonly state: DiscoveryRuleState;
  private readonly sets = new Map<string, Set<number>>();

  constructor(state: DiscoveryRuleState) {
    this.state = state;
    this.sets.set('pooled', new Set(state.pooled.features));
    for (const [lang, s] of Object.entries(state.perLanguage)) this.sets.set(lang, new Set(s.features));
  }

  score(f: TextFeatures, lang?: string): RuleScore {
    const languageUsed = lang !== undefined && this.state.perLanguage[lang] ? lang : 'pooled';
    const set = this.sets.get(languageUsed)!;
    const firing: number[] = [];
    for (const id of f.ids) if (set.has(id)) firing.push(id);
    const k = set.size;
    return { score: k === 0 ? 0 : firing.length / k, toxic: firing.length > 0, firing, languageUsed };
  }

  toJSON(): DiscoveryRuleJson {
    return { format: RULE_FORMAT, version: RULE_FORMAT_VERSION, ...this.state };
  }

  /** Validates and loads a rule; errors name `source` and the offending field. */
  static fromJSON(json: unknown, source = 'rule'): DiscoveryRule {
    const parsed = ruleSchema.safeParse(json);
    if (!parsed.success) throw formatError(describeZodError(source, parsed.error));
    const { pooled, perLanguage } = parsed.data;
    return new DiscoveryRule({ pooled, perLanguage });
  }
}

export const RULE_FORMAT = 'toxscope-discovery-rule';
export const RULE_FORMAT_VERSION = 1;
const ruleSetSchema = z
  .object({ k: z.number().int().nonnegative(), features: z.array(z.number().int().nonnegative()), validationF1: z.number().min(0).max(1) })
  .refine((s) => s.features.length === s.k, { message: 'features must list exactly k feature ids' });
export const ruleSchema = z.object({
  format: z.literal(RULE_FORMAT),
  version: z.literal(RULE_FORMAT_VERSION),
  pooled: ruleSetSchema,
  perLanguage: z.record(z.string(), ruleSetSchema),
});
export type DiscoveryRuleJson = z.infer<typeof ruleSchema>;
