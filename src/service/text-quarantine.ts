/**
 * Texts that crash the engine, remembered so that one hostile text cannot crash it forever.
 *
 * Every text in the engine's batch when its worker thread dies is a suspect: its digest (sha256 of its token ids,
 * src/engine/quarantine.ts; never the text) is counted once per death. A suspect is retried, alone in its batches
 * (one death can be anything: an OOM caused by a neighbour), and forgotten once it is scored to the end. A text
 * present at `deaths` deaths is quarantined: refused without running the engine, whatever request or queue message
 * carries it.
 *
 * Kept in the data directory (one small JSON file, replaced atomically at each death), so that the count survives a
 * restart of the process too and a pod's crash loop ends. At most `maxEntries` texts are remembered; the ones blamed
 * least recently are forgotten first.
 */
import { readFileSync } from 'node:fs';
import type { EngineQuarantine } from '../engine/quarantine.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Logger } from '../util/logger.js';
import { writeAtomically } from '../util/write-atomically.js';

export const QUARANTINE_FILE = 'engine-quarantine.json';
const FORMAT = 'toxscope-engine-quarantine/1';
const DEFAULT_MAX_ENTRIES = 10_000;

export interface TextQuarantineOptions {
  /** deaths a text must be present at to be quarantined; 0: never (no suspects either) */
  deaths: number;
  /** the file it is kept in; absent: memory only */
  path?: string;
  /** most texts remembered, suspects and quarantined together (default 10,000) */
  maxEntries?: number;
  metrics?: Metrics;
  log?: Logger;
}

interface Entry {
  deaths: number;
  /** ISO 8601 time of the last death it was present at */
  last: string;
}

export class TextQuarantine implements EngineQuarantine {
  /** digest -> entry, in the order last blamed (least recent first) */
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;

  constructor(private readonly opts: TextQuarantineOptions) {
    this.maxEntries = opts.maxEntries ?? DEFAULT_MAX_ENTRIES;
    if (opts.path) this.load(opts.path);
    this.observe();
  }

  quarantinedAt(digest: string): number {
    const deaths = this.entries.get(digest)?.deaths ?? 0;
    return this.opts.deaths > 0 && deaths >= this.opts.deaths ? deaths : 0;
  }

  isSuspect(digest: string): boolean {
    return this.opts.deaths > 0 && this.entries.has(digest) && this.quarantinedAt(digest) === 0;
  }

  died(digests: readonly string[]): void {
    if (this.opts.deaths <= 0 || digests.length === 0) return;
    const last = new Date().toISOString();
    const quarantined: string[] = [];
    for (const d of new Set(digests)) {
      const deaths = (this.entries.get(d)?.deaths ?? 0) + 1;
      this.entries.delete(d); // to the end: blamed most recently
      this.entries.set(d, { deaths, last });
      if (deaths === this.opts.deaths) quarantined.push(d);
    }
    for (const d of this.entries.keys()) {
      if (this.entries.size <= this.maxEntries) break;
      this.entries.delete(d);
    }
    this.opts.log?.warn('the engine died with texts in its batch: they are suspects', { texts: digests.length, quarantined: quarantined.length });
    for (const d of quarantined)
      this.opts.log?.error('a text crashed the engine repeatedly: quarantined, requests holding it are refused', { sha256: d, deaths: this.opts.deaths });
    this.changed();
  }

  /**
   * Forgotten in memory only: the file follows at the next death. A restart before it finds the text a suspect
   * again, which costs it batches of its own until it is scored once more, never a refusal; and no request waits
   * for a write (one of 10,000 texts takes ~20 ms).
   */
  cleared(digests: readonly string[]): void {
    let any = false;
    for (const d of digests) if (this.isSuspect(d)) any = this.entries.delete(d) || any;
    if (any) this.observe();
  }

  refused(): void {
    this.opts.metrics?.engineQuarantineRefusals.inc();
  }

  /** How many texts are quarantined and suspected now. */
  counts(): { quarantined: number; suspects: number } {
    let quarantined = 0;
    for (const d of this.entries.keys()) if (this.quarantinedAt(d) > 0) quarantined++;
    return { quarantined, suspects: this.opts.deaths > 0 ? this.entries.size - quarantined : 0 };
  }

  private changed(): void {
    this.observe();
    if (!this.opts.path) return;
    const texts = [...this.entries].map(([sha256, e]) => ({ sha256, deaths: e.deaths, last: e.last }));
    try {
      writeAtomically(this.opts.path, JSON.stringify({ format: FORMAT, texts }));
    } catch (e) {
      // kept in memory: this process still refuses them; a restart would start from the last file written
      this.opts.log?.error('the engine quarantine could not be written', { path: this.opts.path, error: (e as Error)?.message ?? String(e) });
    }
  }

  private observe(): void {
    const { quarantined, suspects } = this.counts();
    this.opts.metrics?.engineQuarantineTexts.set({ state: 'quarantined' }, quarantined);
    this.opts.metrics?.engineQuarantineTexts.set({ state: 'suspect' }, suspects);
  }

  /** A missing file is an empty quarantine; an unreadable one too, said in the log (the service must start). */
  private load(path: string): void {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.opts.log?.warn('the engine quarantine could not be read: starting without it', { path, error: (e as Error).message });
      return;
    }
    try {
      const doc = JSON.parse(text) as { format?: unknown; texts?: unknown };
      if (doc.format !== FORMAT || !Array.isArray(doc.texts)) throw new Error(`not a ${FORMAT} document`);
      for (const t of doc.texts.slice(-this.maxEntries) as { sha256?: unknown; deaths?: unknown; last?: unknown }[]) {
        if (typeof t?.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(t.sha256) || !Number.isInteger(t.deaths) || (t.deaths as number) < 1) continue;
        this.entries.set(t.sha256, { deaths: t.deaths as number, last: typeof t.last === 'string' ? t.last : '' });
      }
    } catch (e) {
      this.opts.log?.warn('the engine quarantine file is not readable: starting without it', { path, error: (e as Error).message });
    }
  }
}
