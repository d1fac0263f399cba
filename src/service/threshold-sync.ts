/**
 * Stored threshold overrides -> the serving head.
 *
 * PUT /admin/thresholds records every change with the version of the bundle it applies to. A bundle's head
 * keeps the thresholds it was trained with; the head that serves is that head with the stored overrides of
 * its version applied (the latest change per language wins, null = the language's own threshold removed):
 *
 *   serving = bundleHead.withThresholds(overrides(bundleVersion))
 *
 * `apply` does this once for a freshly loaded bundle, before it serves (start-up, POST /admin/reload);
 * `sync` (every intervalMs once started) re-reads the overrides and swaps the head in one assignment when
 * they changed, so replicas sharing one database converge within one interval. An unreachable database
 * never stops serving: the head keeps the thresholds it has and the next sync retries.
 *
 * No HTTP, no database here: the overrides come through a one-method interface (src/db/repository.ts).
 */
import type { Head } from '../head/head.js';
import type { ThresholdTable } from '../head/thresholds.js';

/**
 * 'pooled' and language codes -> threshold; null = the language's own threshold removed (falls back to pooled).
 * Keys 'prevalence:pooled' and 'prevalence:<language>' hold a deployment prevalence set by an operator
 * (PUT /admin/prevalence); they are applied first (Head.withPrevalence), then the thresholds on top.
 */
export type ThresholdOverrides = Record<string, number | null>;

export const PREVALENCE_KEY = 'prevalence:';

/** The stored overrides split into prevalence changes and threshold changes. */
export function splitOverrides(overrides: ThresholdOverrides): { prevalence: Record<string, number | null>; thresholds: Record<string, number | null> } {
  const prevalence: Record<string, number | null> = {}, thresholds: Record<string, number | null> = {};
  for (const [key, value] of Object.entries(overrides)) {
    if (key.startsWith(PREVALENCE_KEY)) prevalence[key.slice(PREVALENCE_KEY.length)] = value;
    else thresholds[key] = value;
  }
  return { prevalence, thresholds };
}

/** bundleHead -> its prevalence overrides -> its threshold overrides. */
export function withOverrides(bundleHead: Head, overrides: ThresholdOverrides): Head {
  const { prevalence, thresholds } = splitOverrides(overrides);
  const shifted = Object.keys(prevalence).length > 0 ? bundleHead.withPrevalence(prevalence) : bundleHead;
  return shifted.withThresholds(thresholds);
}

export interface ThresholdOverrideSource {
  /** toxicity's overrides */
  thresholdOverrides(bundleVersion: string): Promise<ThresholdOverrides>;
  /** every attribute's overrides (attribute -> its overrides); without it only toxicity's are synced */
  attributeOverrides?(bundleVersion: string): Promise<Record<string, ThresholdOverrides>>;
}

/** What the sync needs of a classifier (Classifier satisfies it). The attribute members: bundles with attributes. */
export interface HeadHolder {
  /** the bundle's version: the key of its overrides */
  readonly version: string;
  /** the toxicity head as the bundle shipped it */
  readonly bundleHead: Head;
  /** the toxicity head serving now */
  readonly head: Head;
  setHead(head: Head): void;
  /** toxicity and the bundle's other attributes */
  readonly attributeNames?: readonly string[];
  attributeHead?(name: string): Head | undefined;
  bundleAttributeHead?(name: string): Head | undefined;
  setAttributeHead?(name: string, head: Head): void;
}

export type SyncOutcome =
  /**
   * the heads were swapped; `changed` names 'pooled' and the languages whose toxicity threshold moved, and
   * '<attribute>:pooled', '<attribute>:<language>' for other attributes; `attributes`: other attributes' overrides
   */
  | { status: 'changed'; version: string; overrides: ThresholdOverrides; changed: string[]; attributes?: Record<string, ThresholdOverrides> }
  | { status: 'unchanged'; version: string }
  /** the database did not answer, or a stored override was invalid: the head was left as it was */
  | { status: 'failed'; version: string; error: unknown }
  /** the head was changed (PUT /admin/thresholds) while the overrides were read: the next sync decides */
  | { status: 'raced'; version: string }
  /** no bundle is loaded yet */
  | { status: 'idle' };

export interface ThresholdSyncOptions {
  source: ThresholdOverrideSource;
  /** the classifier serving now; null before the first bundle is loaded */
  current: () => HeadHolder | null;
  /** period of the background sync (start) */
  intervalMs: number;
  /** every outcome other than 'unchanged' and 'idle' of the background sync (for logging) */
  onOutcome?: (outcome: SyncOutcome) => void;
}

export class ThresholdSync {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<SyncOutcome> | undefined;

  constructor(private readonly options: ThresholdSyncOptions) {}

  /** Apply the stored overrides to a bundle that is not serving yet. Never throws: see the outcome. */
  apply(holder: HeadHolder): Promise<SyncOutcome> {
    return applyOverrides(holder, this.options.source);
  }

  /** Re-read the overrides of the serving bundle and swap its head when they changed. One at a time. */
  sync(): Promise<SyncOutcome> {
    if (this.running) return this.running;
    const holder = this.options.current();
    if (!holder) return Promise.resolve({ status: 'idle' });
    const run = applyOverrides(holder, this.options.source);
    this.running = run;
    void run.finally(() => {
      if (this.running === run) this.running = undefined;
    });
    return run;
  }

  /** Syncs every intervalMs (unref'd timer). Idempotent. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      void this.sync().then((o) => {
        if (o.status !== 'unchanged' && o.status !== 'idle') this.options.onOutcome?.(o);
      });
    }, this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

const TOXICITY = 'toxicity';

/** The holder's attributes other than toxicity, with their serving and bundle heads. */
function otherAttributes(holder: HeadHolder): { name: string; seen: Head; bundle: Head }[] {
  const out: { name: string; seen: Head; bundle: Head }[] = [];
  for (const name of holder.attributeNames ?? []) {
    if (name === TOXICITY) continue;
    const seen = holder.attributeHead?.(name), bundle = holder.bundleAttributeHead?.(name);
    if (seen && bundle && holder.setAttributeHead) out.push({ name, seen, bundle });
  }
  return out;
}

/** bundle heads + stored overrides -> the holder's heads (toxicity's and every attribute's), unless it already holds those thresholds. */
export async function applyOverrides(holder: HeadHolder, source: ThresholdOverrideSource): Promise<SyncOutcome> {
  const version = holder.version;
  const seen = holder.head;
  const others = otherAttributes(holder);
  let overrides: ThresholdOverrides;
  let byAttribute: Record<string, ThresholdOverrides>;
  let next: Head;
  const nextOthers = new Map<string, Head>();
  try {
    if (source.attributeOverrides) {
      byAttribute = await source.attributeOverrides(version);
      overrides = byAttribute[TOXICITY] ?? {};
    } else {
      overrides = await source.thresholdOverrides(version);
      byAttribute = { [TOXICITY]: overrides };
    }
    next = withOverrides(holder.bundleHead, overrides); // validates every stored value
    for (const a of others) nextOthers.set(a.name, withOverrides(a.bundle, byAttribute[a.name] ?? {}));
  } catch (error) {
    return { status: 'failed', version, error };
  }
  // compare-and-set: a PUT that landed while we read is newer than what we read
  if (holder.head !== seen || others.some((a) => holder.attributeHead!(a.name) !== a.seen)) return { status: 'raced', version };
  const changed = changedThresholds(seen.thresholds, next.thresholds);
  if (deploymentKey(seen) !== deploymentKey(next)) changed.push('prevalence');
  const toxicityMoved = changed.length > 0;
  const swaps: [string, Head][] = [];
  for (const a of others) {
    const n = nextOthers.get(a.name)!;
    const moved = changedThresholds(a.seen.thresholds, n.thresholds);
    if (deploymentKey(a.seen) !== deploymentKey(n)) moved.push('prevalence');
    if (moved.length > 0) swaps.push([a.name, n]);
    changed.push(...moved.map((m) => `${a.name}:${m}`));
  }
  if (changed.length === 0) return { status: 'unchanged', version };
  if (toxicityMoved) holder.setHead(next);
  for (const [name, head] of swaps) holder.setAttributeHead!(name, head);
  const attributes = Object.fromEntries(Object.entries(byAttribute).filter(([a]) => a !== TOXICITY));
  return { status: 'changed', version, overrides, changed, ...(Object.keys(attributes).length > 0 && { attributes }) };
}

/** A head's deployment prevalences, canonically ordered (for change detection). */
function deploymentKey(h: Head): string {
  const d = h.prior?.deployment;
  return d ? JSON.stringify([d.pooled ?? null, Object.entries(d.perLanguage).sort(([a], [b]) => a.localeCompare(b))]) : 'none';
}

/** 'pooled' and the languages whose effective own threshold differs between a and b (sorted). */
export function changedThresholds(a: Readonly<ThresholdTable>, b: Readonly<ThresholdTable>): string[] {
  const out: string[] = [];
  if (a.pooled !== b.pooled) out.push('pooled');
  const languages = [...new Set([...Object.keys(a.perLanguage), ...Object.keys(b.perLanguage)])].sort();
  for (const language of languages) if (a.perLanguage[language] !== b.perLanguage[language]) out.push(language);
  return out;
}

/** Where each threshold of `serving` comes from, against the bundle's: 'removed' = the bundle's own was removed. */
export function thresholdSources(bundle: Readonly<ThresholdTable>, serving: Readonly<ThresholdTable>): Record<string, 'bundle' | 'override' | 'removed'> {
  const out: Record<string, 'bundle' | 'override' | 'removed'> = { pooled: bundle.pooled === serving.pooled ? 'bundle' : 'override' };
  const languages = [...new Set([...Object.keys(bundle.perLanguage), ...Object.keys(serving.perLanguage)])].sort();
  for (const language of languages) {
    const own = serving.perLanguage[language];
    out[language] = own === undefined ? 'removed' : own === bundle.perLanguage[language] ? 'bundle' : 'override';
  }
  return out;
}
