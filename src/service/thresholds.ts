/**
 * Changing thresholds, for every entry point (PUT /admin/thresholds, the admin page through it).
 *
 * Every change (who, when, old, new, the bundle version) is recorded in the audit log BEFORE it applies, all in
 * one statement; then the head is swapped in one assignment: requests already running keep the old thresholds,
 * every request after the answer sees the new ones. Changes to one host are serialised. The recorded changes
 * are replayed onto the same bundle version after a restart or reload, and by the other replicas
 * (src/service/threshold-sync.ts).
 */
import { ToxScopeError, validationError } from '../errors.js';
import type { Head } from '../head/head.js';
import { TOXICITY } from '../head/attributes.js';
import type { NewThresholdChangeInput } from '../db/repository.js';
import type { ClassifierHost } from './classifier-host.js';
import type { ServiceDeps } from './deps.js';
import { thresholdSources } from './threshold-sync.js';

export interface ThresholdsView {
  bundle_version: string;
  /** the attribute whose thresholds these are (toxicity unless asked) */
  attribute: string;
  /** every attribute the bundle scores (each has its own thresholds) */
  attributes: string[];
  pooled: number;
  per_language: Record<string, number>;
  /** per threshold: the bundle's, an operator's override, or removed (falls back to pooled) */
  sources: ReturnType<typeof thresholdSources>;
  bundle: { pooled: number; per_language: Record<string, number> };
}

export interface ThresholdChangeCall {
  /**
   * 'pooled' or a normalised language code -> a probability; null removes a language's own threshold (it falls
   * back to pooled); 'bundle' reverts to the bundle's trained value (its own threshold, or pooled when the bundle
   * had none for the language)
   */
  changes: Record<string, number | null | 'bundle'>;
  actor: string;
  reason?: string;
  /** the attribute whose head changes (default toxicity) */
  attribute?: string;
}

/** The serving and the bundle's head of one attribute; an attribute the bundle does not score is a validation error. */
export function attributeHeads(host: ClassifierHost, attribute: string = TOXICITY): { serving: Head; bundle: Head } {
  const { classifier } = host.current();
  const serving = classifier.attributeHead(attribute);
  const bundle = classifier.bundleAttributeHead(attribute);
  if (!serving || !bundle)
    throw validationError(`attribute: unknown attribute '${attribute}': this bundle scores ${classifier.attributeNames.join(', ')}`, { field: 'attribute', value: attribute });
  return { serving, bundle };
}

export function thresholdsView(host: ClassifierHost, attribute: string = TOXICITY): ThresholdsView {
  const { classifier, info } = host.current();
  const heads = attributeHeads(host, attribute);
  const t = heads.serving.thresholds;
  const b = heads.bundle.thresholds;
  return {
    bundle_version: info.version,
    attribute,
    attributes: classifier.attributeNames,
    pooled: t.pooled,
    per_language: { ...t.perLanguage },
    sources: thresholdSources(b, t),
    bundle: { pooled: b.pooled, per_language: { ...b.perLanguage } },
  };
}

/** One chain of changes per host: a change starts once the one before it has been recorded and applied. */
const locks = new WeakMap<ClassifierHost, Promise<unknown>>();

/** Runs `change` after every earlier threshold or prevalence change of this host (src/service/prevalence.ts too). */
export async function serialized<T>(host: ClassifierHost, change: () => Promise<T>): Promise<T> {
  const run = (locks.get(host) ?? Promise.resolve()).then(change);
  locks.set(host, run.catch(() => undefined));
  return run;
}

export async function changeThresholds(deps: Pick<ServiceDeps, 'host' | 'audit' | 'log'>, call: ThresholdChangeCall): Promise<ThresholdsView> {
  const { host, audit } = deps;
  if (!audit) throw new ToxScopeError('unavailable', 'threshold changes must be recorded in the audit log, and no database is configured');
  const { actor } = call;
  const attribute = call.attribute ?? TOXICITY;
  attributeHeads(host, attribute); // an unknown attribute is refused before anything is queued
  const run = (locks.get(host) ?? Promise.resolve()).then(async () => {
    const { classifier, info } = host.current();
    const { serving: before, bundle } = attributeHeads(host, attribute);
    const trained = bundle.thresholds;
    const reverted = new Set(Object.keys(call.changes).filter((k) => call.changes[k] === 'bundle'));
    const changes: Record<string, number | null> = {};
    for (const [language, value] of Object.entries(call.changes)) {
      if (value !== 'bundle') changes[language] = value;
      else changes[language] = language === 'pooled' ? trained.pooled : (trained.perLanguage[language] ?? null);
    }
    const after = before.withThresholds(changes); // validates before anything is recorded
    const at = new Date();
    const records: NewThresholdChangeInput[] = [];
    for (const [language, value] of Object.entries(changes)) {
      const old = language === 'pooled' ? before.thresholds.pooled : (before.thresholds.perLanguage[language] ?? null);
      const now = language === 'pooled' ? after.thresholds.pooled : (after.thresholds.perLanguage[language] ?? after.thresholds.pooled);
      if (value === null && old === null) continue;
      const reason = call.reason ?? (reverted.has(language) ? "reverted to the bundle's threshold" : value === null ? 'removed: falls back to pooled' : null);
      records.push({ actor, attribute, language, oldThreshold: old, newThreshold: now, reason, at, bundleVersion: info.version, removed: value === null });
    }
    try {
      await audit.recordThresholdChanges(records);
    } catch (e) {
      throw new ToxScopeError('unavailable', 'the audit log (database) did not answer: the thresholds were not changed', {}, { cause: e });
    }
    // a threshold sync may have swapped the head while we wrote: apply the changes on top of what serves now
    const latest = classifier.attributeHead(attribute)!;
    classifier.setAttributeHead(attribute, latest === before ? after : latest.withThresholds(changes));
    deps.log?.info('thresholds changed', { actor, attribute, changes });
  });
  locks.set(host, run.catch(() => undefined));
  await run;
  return thresholdsView(host, attribute);
}
