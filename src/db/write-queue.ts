/**
 * Database writes off the request path. Predictions (and feedback for predictions not yet written) are queued
 * and written in batches by one background writer; the request path never waits for the database.
 *
 * Durability: every accepted entry is appended to the journal (src/db/journal.ts) before the call that
 * accepts it returns, so before its answer is sent: a crash (kill -9, OOM kill) loses nothing answered, and
 * the journal's group commit fsyncs it within `syncMs` (a power loss loses at most that window). Entries are
 * also held in memory up to `maxQueued`; past that (a slow or absent database) they live only in the journal
 * and are read back from it in order. Journal space is released only after the database committed the rows.
 *
 * Exactly once: every write is idempotent (ON CONFLICT DO NOTHING on prediction id; feedback upserted by
 * prediction id, the latest timestamp winning), so a batch replayed after a crash between its commit and the
 * journal's release, or retried after a lost acknowledgement, is never stored twice.
 *
 *   order of entries:  head batch (being written)  <  memory  <  journal-only ("spilled")
 */
import { ToxScopeError } from '../errors.js';
import { describeDbError, isTransientDbError } from './db-error.js';
import { Journal, type JournalPosition, type QueueEntry } from './journal.js';
import type { FeedbackItem, FeedbackResult, Repository } from './repository.js';
import { DEFAULT_ATTRIBUTE, type NewPrediction } from './schema.js';

export { isTransientDbError } from './db-error.js';

export interface WriteQueueOptions {
  repo: Pick<Repository, 'insertPredictions' | 'recordFeedback'>;
  /** Journal directory; what an earlier run left there is replayed first. */
  journalDir: string;
  /** Group-commit window in ms: accepted entries are fsync'd at most this long after acceptance (0: before). Default 50. */
  syncMs?: number;
  /** Entries held in memory before new ones are kept in the journal only (default 10 000). */
  maxQueued?: number;
  /** Journal size limit in bytes (default 1 GiB); past it, enqueueing fails with 'overloaded'. */
  maxJournalBytes?: number;
  /** Entries per database write (default 500). */
  batchSize?: number;
  /** How long a new entry may wait for others to share its write (default 20 ms). */
  flushDelayMs?: number;
  /** Retry backoff after a failed write: doubles from min to max (defaults 100 ms, 5 s). */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Failed writes (with whether they will be retried) and dropped entries. */
  onError?: (error: unknown, info: { retrying: boolean; dropped?: QueueEntry }) => void;
}

export interface WriteQueueStats {
  /** Entries held in memory, including a batch being written from memory. */
  queued: number;
  /** Entries held only in the journal (past the memory bound, or left by an earlier run), not yet written. */
  spilled: number;
  /** Entries ever kept in the journal only (since start). */
  spilledTotal: number;
  /** Entries found in the journal at start (left by an earlier run: a crash or a shutdown with the database away). */
  recovered: number;
  /** Entries written to the database from the journal (spilled or recovered; since start). */
  replayed: number;
  /** Entries written (since start; after a failure while isolating a rejected row, its batch is counted again). */
  written: number;
  /** Entries the database rejected as invalid, or unreadable journal lines: reported through onError. */
  dropped: number;
  /** Entries refused at enqueue (the journal full or not writable): the caller was told, nothing was kept. */
  refused: number;
  /** Bytes in the journal. */
  journalBytes: number;
  /** Outcome of the last write attempt. */
  databaseUp: boolean;
}

/** Rejects rows that would fail in the writer for reasons no retry fixes (the writer would stall on them). */
function validatePrediction(row: NewPrediction, index: number): void {
  const bad = (field: string, why: string) => {
    throw new ToxScopeError('validation', `prediction row ${index}: ${field} ${why}`, { field, index });
  };
  for (const field of ['id', 'requestId', 'language', 'bundleVersion', 'textSha256'] as const) {
    if (typeof row[field] !== 'string' || row[field] === '') bad(field, 'must be a non-empty string');
  }
  if (!(row.createdAt instanceof Date) || Number.isNaN(row.createdAt.getTime())) bad('createdAt', 'must be a valid Date');
  if (!Number.isFinite(row.score)) bad('score', 'must be a finite number');
  if (!Number.isFinite(row.threshold)) bad('threshold', 'must be a finite number');
  if (typeof row.label !== 'boolean') bad('label', 'must be a boolean');
  if (row.attributes !== undefined && row.attributes !== null) {
    if (typeof row.attributes !== 'object') bad('attributes', 'must be an object');
    for (const [name, a] of Object.entries(row.attributes)) {
      if (!Number.isFinite(a?.score) || !Number.isFinite(a?.threshold) || typeof a?.label !== 'boolean') bad(`attributes.${name}`, 'must hold a finite score and threshold and a boolean label');
    }
  }
}

/** Feedback is one label per (prediction, attribute). */
const feedbackKey = (item: FeedbackItem) => `${item.attribute ?? DEFAULT_ATTRIBUTE}\u0000${item.predictionId}`;

const samePosition = (a: JournalPosition, b: JournalPosition | undefined) => b !== undefined && a.segment === b.segment && a.offset === b.offset;

interface HeadBatch {
  entries: QueueEntry[];
  /** For a batch read from the journal: the position just past it. */
  file?: { next: JournalPosition };
}

export class WriteQueue {
  private readonly repo: WriteQueueOptions['repo'];
  private readonly maxQueued: number;
  private readonly maxJournalBytes: number;
  private readonly batchSize: number;
  private readonly flushDelayMs: number;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;
  private readonly onError: NonNullable<WriteQueueOptions['onError']>;
  private readonly journal: Journal;

  private head: HeadBatch | undefined;
  private memory: QueueEntry[] = [];
  /** Where the journal-only entries begin (undefined: none). */
  private fileCursor: JournalPosition | undefined;
  private filePending = 0;
  private nextSeq = 1;
  private committedSeq = 0;
  /** Queued (not yet written) predictions and feedback, by prediction id, with multiplicity. */
  private readonly pendingPredictions = new Map<string, number>();
  private readonly pendingFeedback = new Map<string, number>();

  private lock: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private loopActive = false;
  private failures = 0;
  private closed = false;
  private readonly counters = { spilledTotal: 0, recovered: 0, replayed: 0, written: 0, dropped: 0, refused: 0, databaseUp: true };

  constructor(options: WriteQueueOptions) {
    this.repo = options.repo;
    this.maxQueued = options.maxQueued ?? 10_000;
    this.maxJournalBytes = options.maxJournalBytes ?? 1 << 30;
    this.batchSize = options.batchSize ?? 500;
    this.flushDelayMs = options.flushDelayMs ?? 20;
    this.retryMinMs = options.retryMinMs ?? 100;
    this.retryMaxMs = options.retryMaxMs ?? 5_000;
    this.onError = options.onError ?? (() => undefined);
    if (!(this.maxQueued >= 1) || !(this.batchSize >= 1)) {
      throw new ToxScopeError('validation', `write queue maxQueued and batchSize must be at least 1; got ${this.maxQueued} and ${this.batchSize}`);
    }
    // Segments of a sixteenth of the limit: under steady load the journal is never idle long enough to be
    // truncated, so committed rows linger until their segment is sealed and released; small segments keep that
    // overhead to about two segments, an eighth of the limit.
    const segmentBytes = Math.max(64 << 10, Math.min(64 << 20, Math.floor(this.maxJournalBytes / 16)));
    this.journal = Journal.open(
      { dir: options.journalDir, syncMs: options.syncMs, segmentBytes, onSyncError: (e) => this.onError(e, { retrying: true }) },
      (e) => {
        this.track(e, +1);
        this.nextSeq = Math.max(this.nextSeq, e.seq + 1);
        this.counters.recovered += 1;
        this.filePending += 1;
      },
      (e) => this.drop(e),
    );
    if (this.filePending > 0) {
      this.fileCursor = this.journal.start;
      this.schedule(0);
    } else {
      this.journal.release(this.committedSeq, true); // only empty or unreadable leftovers: nothing to keep
    }
  }

  /** Queues prediction rows for writing: on disk (journal) when this returns. Never waits for the database. */
  enqueuePredictions(rows: readonly NewPrediction[]): void {
    rows.forEach(validatePrediction);
    this.enqueue(rows.map((row) => ({ seq: 0, kind: 'prediction', row })));
  }

  /**
   * Records moderator feedback. Items whose prediction is still queued are queued behind it (never reported
   * as unknown; on disk when this resolves); the others are written now, so unknown ids can be reported. When
   * the database is away, feedback for queued predictions is still accepted; feedback that needs the database
   * to check its id fails with 'unavailable' and nothing of the call is kept (retrying it is safe).
   */
  async recordFeedback(items: readonly FeedbackItem[]): Promise<FeedbackResult[]> {
    this.assertOpen();
    const now = new Date();
    const normalized = items.map((i) => ({ ...i, at: i.at ?? now }));
    const queuedIdx: number[] = [];
    const directIdx: number[] = [];
    normalized.forEach((item, i) => (this.pendingPredictions.has(item.predictionId) ? queuedIdx : directIdx).push(i));

    const results: FeedbackResult[] = new Array(items.length);
    if (directIdx.length > 0) {
      let direct: FeedbackResult[];
      try {
        direct = await this.repo.recordFeedback(directIdx.map((i) => normalized[i]));
      } catch (e) {
        if (!isTransientDbError(e)) throw e;
        throw new ToxScopeError(
          'unavailable',
          'the database did not answer, so feedback for predictions already written cannot be checked; retry later',
          { predictionIds: directIdx.map((i) => normalized[i].predictionId) },
          { cause: e },
        );
      }
      directIdx.forEach((i, k) => (results[i] = direct[k]));
    }
    const labeledInCall = new Set<string>();
    for (const i of queuedIdx) {
      const item = normalized[i];
      const key = feedbackKey(item);
      const earlier = this.pendingFeedback.has(key) || labeledInCall.has(key);
      results[i] = { predictionId: item.predictionId, attribute: item.attribute ?? DEFAULT_ATTRIBUTE, status: earlier ? 'updated' : 'stored' };
      labeledInCall.add(key);
    }
    this.enqueue(queuedIdx.map((i) => ({ seq: 0, kind: 'feedback', item: normalized[i] })));
    return results;
  }

  /**
   * Writes everything queued before the call. Rejects with 'unavailable' when the database fails (the
   * background writer keeps retrying).
   */
  async flush(): Promise<void> {
    const target = this.nextSeq - 1;
    while (this.committedSeq < target) {
      let progressed: boolean;
      try {
        progressed = await this.exclusive(() => this.writeHead());
      } catch (e) {
        throw new ToxScopeError('unavailable', `write queue flush failed: ${describeDbError(e).message}`, {}, { cause: e });
      }
      if (!progressed) break;
    }
  }

  /** The database is back (or just became reachable): retry now instead of at the end of the backoff. */
  wake(): void {
    if (this.closed) return;
    this.failures = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.loopActive && this.hasWork()) this.schedule(0);
  }

  /**
   * Stops the writer after a last flush (bounded by timeoutMs, default 5 s). What could not be written stays
   * in the journal, in order, for the next start.
   */
  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([
      this.flush().catch(() => undefined),
      new Promise((r) => (timeout = setTimeout(r, options.timeoutMs ?? 5_000))),
    ]);
    clearTimeout(timeout);
    this.journal.release(this.committedSeq, !this.hasWork());
    this.journal.close();
  }

  stats(): WriteQueueStats {
    return {
      queued: (this.head && !this.head.file ? this.head.entries.length : 0) + this.memory.length,
      spilled: this.filePending,
      ...this.counters,
      journalBytes: this.closed ? 0 : this.journal.bytes,
    };
  }

  /** Whether a prediction is accepted but not yet in the database. */
  isPending(predictionId: string): boolean {
    return this.pendingPredictions.has(predictionId);
  }

  // --- internals -------------------------------------------------------------------------------------

  private assertOpen(): void {
    if (this.closed) throw new ToxScopeError('unavailable', 'the write queue is closed (shutting down)');
  }

  private hasWork(): boolean {
    return this.head !== undefined || this.memory.length > 0 || this.fileCursor !== undefined;
  }

  private enqueue(entries: QueueEntry[]): void {
    this.assertOpen();
    if (entries.length === 0) return;
    const bytes = this.journal.bytes;
    if (bytes > this.maxJournalBytes) {
      this.counters.refused += entries.length;
      throw new ToxScopeError('overloaded', `the write journal is full (${bytes} bytes, limit ${this.maxJournalBytes}): the database has been away too long`, {
        retryAfterSeconds: 30,
      });
    }
    for (const e of entries) e.seq = this.nextSeq++;
    let at: JournalPosition;
    try {
      at = this.journal.append(entries);
    } catch (e) {
      this.nextSeq -= entries.length; // nothing of this call was accepted
      this.counters.refused += entries.length;
      const why = (e as NodeJS.ErrnoException)?.code ?? (e as Error)?.message ?? String(e);
      throw new ToxScopeError('unavailable', `could not append to the write journal in ${this.journal.dir}: ${why}`, {}, { cause: e });
    }
    if (this.fileCursor === undefined && this.memory.length + entries.length <= this.maxQueued) {
      this.memory.push(...entries);
    } else {
      this.fileCursor ??= at;
      this.filePending += entries.length;
      this.counters.spilledTotal += entries.length;
    }
    for (const e of entries) this.track(e, +1);
    if (!this.loopActive && !this.timer) this.schedule(this.memory.length >= this.batchSize ? 0 : this.flushDelayMs);
  }

  private track(e: QueueEntry, delta: 1 | -1): void {
    const [map, id] = e.kind === 'prediction' ? [this.pendingPredictions, e.row.id] : [this.pendingFeedback, feedbackKey(e.item)];
    const n = (map.get(id) ?? 0) + delta;
    if (n > 0) map.set(id, n);
    else map.delete(id);
  }

  private drop(error: unknown, entry?: QueueEntry): void {
    this.counters.dropped += 1;
    this.onError(error, { retrying: false, dropped: entry });
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  private schedule(delayMs: number): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.loop();
    }, delayMs);
    this.timer.unref();
  }

  /** The background writer: writes batches until nothing is left, backing off after a failure. */
  private async loop(): Promise<void> {
    if (this.loopActive || this.closed) return;
    this.loopActive = true;
    try {
      while (!this.closed && (await this.exclusive(() => this.writeHead()))) {
        // one batch per iteration; other work interleaves at every await
      }
      this.failures = 0;
    } catch (e) {
      this.failures += 1;
      this.onError(e, { retrying: true });
      this.loopActive = false;
      this.schedule(Math.min(this.retryMaxMs, this.retryMinMs * 2 ** (this.failures - 1)));
      return;
    }
    this.loopActive = false;
    if (this.hasWork()) this.schedule(0);
  }

  /** Writes the oldest batch. Returns false when there was nothing to write; throws on a transient failure. */
  private async writeHead(): Promise<boolean> {
    this.head ??= this.takeBatch();
    const head = this.head;
    if (!head) return false;
    try {
      await this.writeEntries(head.entries);
      this.counters.databaseUp = true;
    } catch (e) {
      this.counters.databaseUp = false;
      throw e;
    }
    this.commit(head);
    return true;
  }

  private takeBatch(): HeadBatch | undefined {
    if (this.memory.length > 0) return { entries: this.memory.splice(0, this.batchSize) };
    if (this.fileCursor !== undefined) {
      // unreadable lines were reported when the journal was opened (only recovered files can hold them)
      const { entries, next } = this.journal.read(this.fileCursor, this.batchSize, () => undefined);
      return { entries, file: { next } };
    }
    return undefined;
  }

  private commit(head: HeadBatch): void {
    this.head = undefined;
    for (const e of head.entries) this.track(e, -1);
    if (head.entries.length > 0) this.committedSeq = Math.max(this.committedSeq, head.entries[head.entries.length - 1].seq);
    if (head.file) {
      this.counters.replayed += head.entries.length;
      this.filePending = Math.max(0, this.filePending - head.entries.length);
      const stuck = head.entries.length === 0 && samePosition(head.file.next, this.fileCursor);
      if (stuck || this.journal.atEnd(head.file.next)) {
        this.fileCursor = undefined;
        this.filePending = 0;
      } else {
        this.fileCursor = head.file.next;
      }
    }
    if (!this.closed) this.journal.release(this.committedSeq, !this.hasWork());
  }

  /** Predictions first, then feedback (which may refer to them), each idempotent. */
  private async writeEntries(entries: readonly QueueEntry[]): Promise<void> {
    try {
      await this.writeGroup(entries);
      this.counters.written += entries.length;
    } catch (e) {
      if (isTransientDbError(e)) throw e;
      // A row the database rejects would block the queue forever: write one by one, drop the bad ones.
      for (const entry of entries) {
        try {
          await this.writeGroup([entry]);
          this.counters.written += 1;
        } catch (single) {
          if (isTransientDbError(single)) throw single;
          this.drop(single, entry);
        }
      }
    }
  }

  private async writeGroup(entries: readonly QueueEntry[]): Promise<void> {
    const predictions: NewPrediction[] = [];
    const feedback: (FeedbackItem & { at: Date })[] = [];
    for (const e of entries) {
      if (e.kind === 'prediction') predictions.push(e.row);
      else feedback.push(e.item);
    }
    if (predictions.length > 0) await this.repo.insertPredictions(predictions);
    if (feedback.length > 0) {
      const results = await this.repo.recordFeedback(feedback);
      for (const r of results) {
        if (r.status === 'unknown_id') {
          this.drop(new ToxScopeError('internal', `queued feedback for ${r.predictionId} found no prediction`, { predictionId: r.predictionId }));
        }
      }
    }
  }
}
