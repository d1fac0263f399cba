/**
 * The last threshold overrides the database answered, kept in the data directory so that a bundle loaded while
 * the database is away (a start, a crash restart, POST /admin/reload during an outage) serves the thresholds an
 * operator set instead of the bundle's own.
 *
 *   attributeOverrides(version):  database answers   -> its answer (remembered here, per bundle version)
 *                                 database away, or  -> the remembered answer for that version, if any
 *                                 no answer in 5 s
 *                                                       (else the database's error, as before)
 *
 * (Every attribute's overrides of a version are kept together; `thresholdOverrides` is toxicity's.)
 * The database stays the source of truth: the cache is read only when it does not answer (a transient error),
 * and every answer replaces what was remembered. The file (`<dataDir>/threshold-overrides.json`) is written
 * atomically (a temporary file, fsync'd, renamed over the old one, the directory fsync'd): a crash leaves the
 * old content or the new, never a torn file. An unreadable file is treated as empty (the database answers again).
 */
import { readFileSync } from 'node:fs';
import { writeAtomically } from '../util/write-atomically.js';
import { isTransientDbError } from './db-error.js';
import type { AttributeOverrides, Repository, ThresholdOverrides } from './repository.js';
import { DEFAULT_ATTRIBUTE } from './schema.js';

/** attribute -> its overrides (language or prevalence key -> value, null = removed) */
type Overrides = AttributeOverrides;

interface CacheFile {
  format: 'toxscope-threshold-overrides-v2';
  /** bundle version -> { every attribute's overrides, when the database answered them } */
  versions: Record<string, { overrides: Overrides; at: string }>;
}

/** Bundle versions remembered (the most recently answered ones). */
const MAX_VERSIONS = 32;

export interface OverridesCacheOptions {
  source: Pick<Repository, 'attributeOverrides'>;
  /** the cache file, e.g. `<dataDir>/threshold-overrides.json` */
  path: string;
  /** the database did not answer and the remembered overrides were served (for a log line) */
  onFallback?: (info: { version: string; cachedAt: string; error: unknown }) => void;
  /** how long to wait for the database before serving the remembered overrides (default 5 s) */
  timeoutMs?: number;
  /** the cache file could not be written (the answer is served all the same) */
  onWriteError?: (error: unknown) => void;
}

export class OverridesCache {
  private file: CacheFile;

  constructor(private readonly options: OverridesCacheOptions) {
    this.file = readCache(options.path);
  }

  /** Toxicity's overrides of a bundle version (see attributeOverrides). */
  async thresholdOverrides(version: string): Promise<ThresholdOverrides> {
    return (await this.attributeOverrides(version))[DEFAULT_ATTRIBUTE] ?? {};
  }

  /** Every attribute's overrides of a bundle version: the database's answer, or the remembered one while it is away. */
  async attributeOverrides(version: string): Promise<Overrides> {
    let overrides: Overrides;
    let timer: NodeJS.Timeout | undefined;
    const timeoutMs = this.options.timeoutMs ?? 5_000;
    try {
      // a driver that cannot connect may hold a query for its reconnect backoff (postgres.js: up to 20 s)
      overrides = await Promise.race([
        this.options.source.attributeOverrides(version),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(Object.assign(new Error(`the database did not answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs);
          timer.unref();
        }),
      ]);
    } catch (error) {
      const cached = this.file.versions[version];
      if (!cached || !isTransientDbError(error)) throw error;
      this.options.onFallback?.({ version, cachedAt: cached.at, error });
      return copy(cached.overrides);
    } finally {
      clearTimeout(timer);
    }
    this.remember(version, overrides);
    return overrides;
  }

  /**
   * Changes the database has just committed (PUT /admin/thresholds): merged into the remembered overrides of
   * their version at once (the latest per language wins, a removal is null), so that an outage right after the
   * change cannot leave the older ones in the file; then the version is re-read from the database in the
   * background (other replicas' changes). Never throws.
   */
  recorded(changes: readonly { bundleVersion?: string | null; attribute?: string; language: string; newThreshold: number; removed?: boolean | null }[]): void {
    const byVersion = new Map<string, Overrides>();
    for (const c of changes) {
      if (!c.bundleVersion) continue;
      const merged = byVersion.get(c.bundleVersion) ?? copy(this.file.versions[c.bundleVersion]?.overrides ?? {});
      (merged[c.attribute ?? DEFAULT_ATTRIBUTE] ??= {})[c.language] = c.removed ? null : c.newThreshold;
      byVersion.set(c.bundleVersion, merged);
    }
    for (const [version, merged] of byVersion) {
      this.remember(version, merged);
      void this.refresh(version);
    }
  }

  /** Re-read a version's overrides from the database into the cache; never throws. */
  async refresh(version: string): Promise<void> {
    try {
      this.remember(version, await this.options.source.attributeOverrides(version));
    } catch {
      // the database is away again: the next answer refreshes it
    }
  }

  /** What is remembered for a version (undefined: nothing). */
  cached(version: string): Overrides | undefined {
    const c = this.file.versions[version];
    return c && copy(c.overrides);
  }

  private remember(version: string, overrides: Overrides): void {
    const previous = this.file.versions[version];
    if (previous && sameOverrides(previous.overrides, overrides)) return;
    const versions = { ...this.file.versions };
    delete versions[version];
    versions[version] = { overrides: copy(overrides), at: new Date().toISOString() };
    const names = Object.keys(versions);
    for (const old of names.slice(0, Math.max(0, names.length - MAX_VERSIONS))) delete versions[old];
    const next: CacheFile = { format: 'toxscope-threshold-overrides-v2', versions };
    try {
      writeAtomically(this.options.path, JSON.stringify(next));
      this.file = next;
    } catch (e) {
      this.file = next; // served from memory in this process; the file catches up at the next answer
      this.options.onWriteError?.(e);
    }
  }
}

const copy = (o: Overrides): Overrides => Object.fromEntries(Object.entries(o).map(([attribute, v]) => [attribute, { ...v }]));

function sameTable(a: ThresholdOverrides, b: ThresholdOverrides): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

function sameOverrides(a: Overrides, b: Overrides): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && sameTable(a[k], b[k]));
}

const isTable = (o: unknown): o is ThresholdOverrides =>
  typeof o === 'object' && o !== null && Object.values(o).every((v) => v === null || (typeof v === 'number' && Number.isFinite(v)));

function readCache(path: string): CacheFile {
  const empty: CacheFile = { format: 'toxscope-threshold-overrides-v2', versions: {} };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return empty;
  }
  try {
    const parsed = JSON.parse(text) as Partial<CacheFile>;
    if (parsed?.format !== empty.format || typeof parsed.versions !== 'object' || parsed.versions === null) return empty;
    const versions: CacheFile['versions'] = {};
    for (const [version, entry] of Object.entries(parsed.versions)) {
      const o = entry?.overrides as unknown;
      if (typeof entry?.at !== 'string' || typeof o !== 'object' || o === null) continue;
      if (!Object.values(o).every(isTable)) continue;
      versions[version] = { overrides: copy(o as Overrides), at: entry.at };
    }
    return { format: empty.format, versions };
  } catch {
    return empty;
  }
}
