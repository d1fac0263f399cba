/**
 * Per-(attribute, language) F1 windows and drift, computed from the database (never from one process's memory, so replicas
 * sharing one Postgres agree), on a schedule and on demand. The metrics module subscribes through onUpdate or
 * reads latest(); the admin route calls driftReport().
 */
import { LANGUAGE_TAG } from '../util/language-tag.js';
import type { NewF1Window } from '../db/schema.js';
import type { Repository } from '../db/repository.js';
import { ToxScopeError, validationError } from '../errors.js';
import { alignedWindow, f1Drift, f1Stats, isDriftAlarm, parseWindow, trailingWindow, type Confusion, type Window } from './f1.js';

/** Calibration-time F1 per language code, from the head's manifest. */
export type Baselines = Readonly<Record<string, number>>;

/** The attribute every bundle scores (rows without an attribute are its). */
export const TOXICITY = 'toxicity';

export interface LanguageDrift extends Confusion {
  n: number;
  precision: number | null;
  recall: number | null;
  f1: number | null;
  baseline: number | null;
  drift: number | null;
  alarm: boolean;
}

/** One attribute's drift in the window. */
export interface AttributeDrift {
  /** Languages with labeled predictions in the window or a baseline. */
  languages: Record<string, LanguageDrift>;
  /** All feedback ever stored for the attribute, per language (the toxscope_feedback_total gauge). */
  feedbackTotals: Record<string, number>;
  /** Languages in alarm, sorted. */
  alarms: string[];
}

export interface DriftSnapshot extends AttributeDrift {
  /** (languages, feedbackTotals, alarms above: toxicity's, as before attributes) */
  window: Window;
  computedAt: Date;
  /** every attribute monitored, toxicity included */
  attributes: Record<string, AttributeDrift>;
}

export type DriftRepository = Pick<Repository, 'confusionByLanguage' | 'feedbackTotals' | 'saveF1Windows'>;

export interface DriftMonitorOptions {
  repo: DriftRepository;
  /** toxicity's baselines */
  baselines: Baselines;
  /** the bundle's other attributes -> their baselines (each gets its own windows; absent: toxicity only) */
  attributes?: Readonly<Record<string, Baselines>>;
  /** Window length in ms (default 24 h). */
  windowMs?: number;
  /** Schedule period in ms (default 60 s); windows end on multiples of it so replicas store the same rows. */
  intervalMs?: number;
  /** Alarm when |drift| > tolerance (default 0.05) ... */
  tolerance?: number;
  /** ... with at least this many labeled predictions in the window (default 50). */
  minLabeled?: number;
  now?: () => Date;
  onUpdate?: (snapshot: DriftSnapshot) => void;
  /** Errors of scheduled runs (the database being away, typically); the last snapshot stays current. */
  onError?: (error: unknown) => void;
}

export interface DriftMonitor {
  /** Computes, stores and publishes the current aligned window. */
  runOnce(): Promise<DriftSnapshot>;
  /** Runs now and every intervalMs (unref'd timer). Idempotent. */
  start(): void;
  stop(): void;
  latest(): DriftSnapshot | undefined;
}

export const DEFAULT_WINDOW_MS = 24 * 3_600_000;

export function computeLanguageDrift(
  confusion: readonly (Confusion & { language: string })[],
  baselines: Baselines,
  tolerance: number,
  minLabeled: number,
  only?: string,
): Record<string, LanguageDrift> {
  const byLanguage = new Map<string, Confusion>();
  for (const c of confusion) byLanguage.set(c.language, { tp: c.tp, fp: c.fp, fn: c.fn, tn: c.tn });
  const languages = only !== undefined ? [only] : [...new Set([...byLanguage.keys(), ...Object.keys(baselines)])].sort();
  const out: Record<string, LanguageDrift> = {};
  for (const language of languages) {
    const counts = byLanguage.get(language) ?? { tp: 0, fp: 0, fn: 0, tn: 0 };
    const stats = f1Stats(counts);
    const baseline = Object.hasOwn(baselines, language) ? baselines[language] : null;
    const drift = f1Drift(stats.f1, baseline);
    out[language] = { ...counts, ...stats, baseline, drift, alarm: isDriftAlarm(drift, stats.n, tolerance, minLabeled) };
  }
  return out;
}

export function createDriftMonitor(options: DriftMonitorOptions): DriftMonitor {
  const windowMs = options.windowMs ?? DEFAULT_WINDOW_MS;
  const intervalMs = options.intervalMs ?? 60_000;
  const tolerance = options.tolerance ?? 0.05;
  const minLabeled = options.minLabeled ?? 50;
  const now = options.now ?? (() => new Date());
  if (!(windowMs > 0) || !(intervalMs > 0)) {
    throw validationError(`drift monitor windowMs and intervalMs must be positive; got ${windowMs} and ${intervalMs}`);
  }
  if (!(tolerance >= 0) || !(minLabeled >= 0)) {
    throw validationError(`drift tolerance and minLabeled must be non-negative; got ${tolerance} and ${minLabeled}`);
  }
  let last: DriftSnapshot | undefined;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<DriftSnapshot> | undefined;

  const monitored: [string, Baselines][] = [[TOXICITY, options.baselines], ...Object.entries(options.attributes ?? {}).filter(([a]) => a !== TOXICITY).sort(([a], [b]) => a.localeCompare(b))];

  async function computeAttribute(attribute: string, baselines: Baselines, window: Window, computedAt: Date): Promise<{ drift: AttributeDrift; rows: NewF1Window[] }> {
    const only = attribute === TOXICITY ? {} : { attribute };
    const confusion = await options.repo.confusionByLanguage(window.start, window.end, undefined, only);
    const languages = computeLanguageDrift(confusion, baselines, tolerance, minLabeled);
    const feedbackTotals = await options.repo.feedbackTotals(only);
    const rows: NewF1Window[] = Object.entries(languages)
      .filter(([, d]) => d.n > 0)
      .map(([language, d]) => ({
        attribute,
        language,
        windowStart: window.start,
        windowEnd: window.end,
        n: d.n,
        tp: d.tp,
        fp: d.fp,
        fn: d.fn,
        tn: d.tn,
        precision: d.precision,
        recall: d.recall,
        f1: d.f1,
        baseline: d.baseline,
        drift: d.drift,
        computedAt,
      }));
    return { drift: { languages, feedbackTotals, alarms: Object.keys(languages).filter((l) => languages[l].alarm) }, rows };
  }

  async function compute(): Promise<DriftSnapshot> {
    const computedAt = now();
    const window = alignedWindow(computedAt, windowMs, intervalMs);
    const attributes: Record<string, AttributeDrift> = {};
    const rows: NewF1Window[] = [];
    for (const [attribute, baselines] of monitored) {
      const r = await computeAttribute(attribute, baselines, window, computedAt);
      attributes[attribute] = r.drift;
      rows.push(...r.rows);
    }
    await options.repo.saveF1Windows(rows);
    const snapshot: DriftSnapshot = { window, computedAt, ...attributes[TOXICITY], attributes };
    last = snapshot;
    options.onUpdate?.(snapshot);
    return snapshot;
  }

  const monitor: DriftMonitor = {
    runOnce() {
      // Concurrent callers (the schedule and an on-demand request) share one computation.
      running ??= compute().finally(() => {
        running = undefined;
      });
      return running;
    },
    start() {
      if (timer) return;
      const tick = () => {
        monitor.runOnce().catch((e) => options.onError?.(e));
      };
      tick();
      timer = setInterval(tick, intervalMs);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
    latest: () => last,
  };
  return monitor;
}

/** The `GET /admin/drift` body. */
export interface DriftReport {
  languages: Record<
    string,
    { n: number; precision: number | null; recall: number | null; f1: number | null; baseline: number | null; drift: number | null }
  >;
}

export interface DriftQuery {
  /** The attribute (default toxicity). */
  attribute?: string;
  /** A language code; absent: every language with labels in the window or a baseline. */
  language?: string;
  /** '30m', '24h', '7d', ...; absent: 24h. */
  window?: string;
}


/**
 * Computes the drift report of one attribute (toxicity unless query.attribute; `baselines` are that attribute's)
 * for the trailing window ending now, straight from the database. Query values come
 * from the URL as strings and are validated here (ToxScopeError 'validation' naming the field).
 */
export async function driftReport(
  repo: Pick<Repository, 'confusionByLanguage'>,
  baselines: Baselines,
  query: DriftQuery = {},
  now: Date = new Date(),
): Promise<DriftReport> {
  const language = query.language === undefined || query.language === '' ? undefined : query.language;
  if (language !== undefined && !LANGUAGE_TAG.test(language)) {
    throw validationError(`language must be a language code such as 'en' or 'pt-BR'; got '${language}'`, {
      field: 'language',
      value: language,
    });
  }
  const windowMs = query.window === undefined || query.window === '' ? DEFAULT_WINDOW_MS : parseWindow(query.window);
  const window = trailingWindow(now, windowMs);
  let confusion;
  try {
    const attribute = query.attribute === undefined || query.attribute === TOXICITY ? {} : { attribute: query.attribute };
    confusion = await repo.confusionByLanguage(window.start, window.end, language, attribute);
  } catch (e) {
    throw new ToxScopeError('unavailable', 'the drift report needs the database, which did not answer', {}, { cause: e });
  }
  const computed = computeLanguageDrift(confusion, baselines, 0, 0, language);
  const languages: DriftReport['languages'] = {};
  for (const [code, d] of Object.entries(computed)) {
    languages[code] = { n: d.n, precision: d.precision, recall: d.recall, f1: d.f1, baseline: d.baseline, drift: d.drift };
  }
  return { languages };
}
