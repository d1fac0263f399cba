/**
 * The deployment prevalence of toxicity (or of another attribute: each head has its own), per language, for every entry point (GET/PUT /admin/prevalence).
 *
 * A change shifts calibration to the new toxic share and re-chooses the thresholds at it (Head.withPrevalence,
 * src/head/prior.ts). It is recorded in the audit log BEFORE it applies, like a threshold change, as rows keyed
 * 'prevalence:<language>' (the share) plus one row per threshold it moved, so a restart, a reload of the same
 * bundle version and the other replicas replay both (src/service/threshold-sync.ts). The view also estimates each
 * language's share from moderators' feedback (estimatePrevalence: labeled share per score bin, weighted by all
 * predictions of the bin), for an operator to apply.
 */
import { ToxScopeError } from '../errors.js';
import type { NewThresholdChangeInput } from '../db/repository.js';
import { estimatePrevalence, type ScoreBin } from '../head/prior.js';
import type { ServiceDeps } from './deps.js';
import { PREVALENCE_KEY } from './threshold-sync.js';
import { attributeHeads, serialized, thresholdsView } from './thresholds.js';
import { TOXICITY } from '../head/attributes.js';

const ESTIMATE_BINS = 20;
const ESTIMATE_DAYS = 30;

export interface PrevalenceView {
  bundle_version: string;
  /** the attribute whose prevalence this is (toxicity unless asked): each attribute's head has its own */
  attribute: string;
  /** the calibration split's toxic share: pooled and per language with its own calibrator */
  sample: { pooled: number; per_language: Record<string, number> } | null;
  /** the shares the service calibrates for now (absent: the sample's) */
  deployment: { pooled: number | null; per_language: Record<string, number> } | null;
  /** from feedback of the last 30 days, per language (needs the database) */
  feedback_estimate?: Record<string, { predictions: number; labeled: number; share: number | null }>;
}

export async function prevalenceView(deps: Pick<ServiceDeps, 'host' | 'review'>, attribute: string = TOXICITY): Promise<PrevalenceView> {
  const { info } = deps.host.current();
  const prior = attributeHeads(deps.host, attribute).serving.prior;
  const view: PrevalenceView = {
    bundle_version: info.version,
    attribute,
    sample: prior ? { pooled: prior.sample.pooled, per_language: { ...prior.sample.perLanguage } } : null,
    deployment: prior ? { pooled: prior.deployment.pooled ?? null, per_language: { ...prior.deployment.perLanguage } } : null,
  };
  if (deps.review) {
    const to = new Date();
    const from = new Date(to.getTime() - ESTIMATE_DAYS * 86_400_000);
    const byLanguage = new Map<string, ScoreBin[]>();
    for (const row of await deps.review.scoreBins(from, to, ESTIMATE_BINS, { attribute })) {
      const bins = byLanguage.get(row.language) ?? byLanguage.set(row.language, []).get(row.language)!;
      let b = bins.find((x) => x.bin === row.bin);
      if (!b) bins.push((b = { bin: row.bin, toxic: 0, benign: 0, unlabeled: 0 }));
      if (row.truth === null) b.unlabeled += row.n;
      else if (row.truth) b.toxic += row.n;
      else b.benign += row.n;
    }
    view.feedback_estimate = Object.fromEntries([...byLanguage].sort(([a], [b]) => a.localeCompare(b)).map(([lang, bins]) => [lang, estimatePrevalence(bins, ESTIMATE_BINS)]));
  }
  return view;
}

export interface PrevalenceChangeCall {
  /** 'pooled' or a normalised language code -> share in (0, 1); null removes a language's own */
  changes: Record<string, number | null>;
  actor: string;
  reason?: string;
  /** the attribute whose calibration shifts (default toxicity) */
  attribute?: string;
}

export async function changePrevalence(deps: Pick<ServiceDeps, 'host' | 'audit' | 'log' | 'review'>, call: PrevalenceChangeCall): Promise<PrevalenceView & { thresholds: ReturnType<typeof thresholdsView> }> {
  const { host, audit } = deps;
  if (!audit) throw new ToxScopeError('unavailable', 'prevalence changes must be recorded in the audit log, and no database is configured');
  const { actor } = call;
  const attribute = call.attribute ?? TOXICITY;
  attributeHeads(host, attribute); // an unknown attribute is refused before anything is queued
  await serialized(host, async () => {
    const { classifier, info } = host.current();
    const before = attributeHeads(host, attribute).serving;
    const after = before.withPrevalence(call.changes); // validates (and refuses a head without a calibration curve)
    const at = new Date();
    const reason = call.reason ?? `prevalence ${Object.entries(call.changes).map(([k, v]) => `${k}=${v ?? 'removed'}`).join(', ')}`;
    const records: NewThresholdChangeInput[] = [];
    const shareOf = (h: typeof before, lang: string) => (lang === 'pooled' ? h.prior?.deployment.pooled : h.prior?.deployment.perLanguage[lang]) ?? null;
    for (const [language, value] of Object.entries(call.changes)) {
      const old = shareOf(before, language);
      if (value === null && old === null) continue;
      const now = value ?? shareOf(after, 'pooled') ?? after.prior?.sample.pooled ?? 0.5;
      records.push({ actor, attribute, language: `${PREVALENCE_KEY}${language}`, oldThreshold: old, newThreshold: now, reason, at, bundleVersion: info.version, removed: value === null });
    }
    // the thresholds it moved, recorded as threshold changes: replayed after the prevalence, they reproduce this head
    const t0 = before.thresholds, t1 = after.thresholds;
    if (t0.pooled !== t1.pooled) records.push({ actor, attribute, language: 'pooled', oldThreshold: t0.pooled, newThreshold: t1.pooled, reason, at, bundleVersion: info.version, removed: false });
    for (const language of Object.keys(t1.perLanguage).sort())
      if (t0.perLanguage[language] !== t1.perLanguage[language])
        records.push({ actor, attribute, language, oldThreshold: t0.perLanguage[language] ?? null, newThreshold: t1.perLanguage[language], reason, at, bundleVersion: info.version, removed: false });
    try {
      await audit.recordThresholdChanges(records);
    } catch (e) {
      throw new ToxScopeError('unavailable', 'the audit log (database) did not answer: the prevalence was not changed', {}, { cause: e });
    }
    const latest = classifier.attributeHead(attribute)!;
    classifier.setAttributeHead(attribute, latest === before ? after : latest.withPrevalence(call.changes));
    deps.log?.info('prevalence changed', { actor, attribute, changes: call.changes });
  });
  return { ...(await prevalenceView(deps, attribute)), thresholds: thresholdsView(host, attribute) };
}
