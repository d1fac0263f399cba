/**
 * Database writes off the request path. Predictions (and feedback for predictions not yet written) are queued
 * and written in batches by one background writer. While the database is away, the request path keeps going:
 * entries wait in a bounded in-memory queue, then in an append-only spill file, and are written back in order
 * (sequence numbers) when it returns. Every write is idempotent (ON CONFLICT DO NOTHING on prediction id,
 * feedback upserted by prediction id with the latest timestamp winning), so a retried batch is never stored
 * twice, not even after a crash between a commit and its acknowledgement.
 *
 *   order of entries:  head batch (being written)  <  memory  <  spill file
 */
import { ToxScopeError } from '../errors.js';
import type { FeedbackItem, FeedbackResult, Repository } from './repository.js';
import type { NewPrediction } from './schema.js';
import { SpillFile, type QueueEntry } from './spill-file.js';

export interface WriteQueueOptions {
  repo: Pick<Repository, 'insertPredictions' | 'recordFeedback'>;
  /** Spill file path (jsonl); an existing file from an earlier run is replayed first. */
  spillPath: string;
  /** Entries held in memory before new ones go to the spill file (default 10 000). */
  maxQueued?: number;
  /** Spill file size limit in bytes (default 1 GiB); past it, enqueueing fails with 'overloaded'. */
  maxSpillBytes?: number;
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
  /** Entries in memory, including the batch being written. */
  queued: number;
  /** Entries in the spill file not yet written. */
  spilled: number;
  /** Entries ever appended to the spill file (since start). */
  spilledTotal: number;
  /** Entries written (since start; after a failure while isolating a rejected row, its batch is counted again). */
  written: number;
  /** Entries the database rejected as invalid, or unreadable spill lines: reported through onError. */
  dropped: number;
  /** Outcome of the last write attempt. */
  databaseUp: boolean;
}

/** Whether an error is worth retrying: anything but a data error (SQLSTATE class 22 or 23) is. */
export function isTransientDbError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^(22|23)[0-9A-Z]{3}$/.test(code)) return false;
  }
  return true;
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
}

interface HeadBatch {
  entries: QueueEntry[];
  /** For a batch read from the spill file: where it ends and how many lines it spans. */
  file?: { end: number; lines: number };
}

export class WriteQueue {
  private readonly repo: WriteQueueOptions['repo'];
  private readonly maxQueued: number;
  private readonly maxSpillBytes: number;
  private readonly batchSize: number;
  private readonly flushDelayMs: number;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;
  private readonly onError: NonNullable<WriteQueueOptions['onError']>;
  readonly spillPath: string;

  private head: HeadBatch | undefined;
  private memory: QueueEntry[] = [];
  private spill: SpillFile | undefined;
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
  private readonly counters = { spilledTotal: 0, written: 0, dropped: 0, databaseUp: true };

  constructor(options: WriteQueueOptions) {
    this.repo = options.repo;
    this.spillPath = options.spillPath;
    this.maxQueued = options.maxQueued ?? 10_000;
    this.maxSpillBytes = options.maxSpillBytes ?? 1 << 30;
    this.batchSize = options.batchSize ?? 500;
    this.flushDelayMs = options.flushDelayMs ?? 20;
    this.retryMinMs = options.retryMinMs ?? 100;
    this.retryMaxMs = options.retryMaxMs ?? 5_000;
    this.onError = options.onError ?? (() => undefined);
    if (!(this.maxQueued >= 1) || !(this.batchSize >= 1)) {
      throw new ToxScopeError('validation', `write queue maxQueued and batchSize must be at least 1; got ${this.maxQueued} and ${this.batchSize}`);
    }
    this.spill = SpillFile.recover(
      this.spillPath,
      (e) => {
        this.track(e, +1);
        this.nextSeq = Math.max(this.nextSeq, e.seq + 1);
      },
      (e) => this.drop(e),
    );
    if (this.spill) this.schedule(0);
  }

  /** Queues prediction rows for writing. Never waits for the database. */
  enqueuePredictions(rows: readonly NewPrediction[]): void {
    rows.forEach(validatePrediction);
    this.enqueue(rows.map((row) => ({ seq: 0, kind: 'prediction', row })));
  }

  /**
   * Records moderator feedback. Items whose prediction is still queued are queued behind it (never reported
   * as unknown); the others are written now, so unknown ids can be reported. When the database is away,
   * feedback for queued predictions is still accepted; feedback that needs the database to check its id fails
   * with 'unavailable' and nothing of the call is kept (retrying it is safe).
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
      const id = normalized[i].predictionId;
      const earlier = this.pendingFeedback.has(id) || labeledInCall.has(id);
      results[i] = { predictionId: id, status: earlier ? 'updated' : 'stored' };
      labeledInCall.add(id);
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
        throw new ToxScopeError('unavailable', `write queue flush failed: ${(e as Error)?.message ?? e}`, {}, { cause: e });
      }
      if (!progressed) break;
    }
  }

  /**
   * Stops the writer after a last flush (bounded by timeoutMs, default 5 s). What could not be written is kept
   * in the spill file, in order, for the next start.
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
    this.persistRemaining();
  }

  stats(): WriteQueueStats {
    return {
      queued: (this.head && !this.head.file ? this.head.entries.length : 0) + this.memory.length,
      spilled: this.spill?.pending ?? 0,
      spilledTotal: this.counters.spilledTotal,
      written: this.counters.written,
      dropped: this.counters.dropped,
      databaseUp: this.counters.databaseUp,
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

  private enqueue(entries: QueueEntry[]): void {
    this.assertOpen();
    if (entries.length === 0) return;
    for (const e of entries) e.seq = this.nextSeq++;
    if (this.spill || this.memory.length + entries.length > this.maxQueued) {
      try {
        this.spill ??= SpillFile.create(this.spillPath);
        if (this.spill.writeOffset > this.maxSpillBytes) {
          throw new ToxScopeError('overloaded', `the spill file ${this.spillPath} is full (${this.spill.writeOffset} bytes)`);
        }
        this.spill.append(entries);
      } catch (e) {
        this.nextSeq -= entries.length; // nothing of this call was accepted
        if (e instanceof ToxScopeError) throw e;
        throw new ToxScopeError('unavailable', `could not append to the spill file ${this.spillPath}: ${(e as Error).message}`, { path: this.spillPath }, { cause: e });
      }
      this.counters.spilledTotal += entries.length;
    } else {
      this.memory.push(...entries);
    }
    for (const e of entries) this.track(e, +1);
    if (!this.loopActive && !this.timer) this.schedule(this.memory.length >= this.batchSize ? 0 : this.flushDelayMs);
  }

  private track(e: QueueEntry, delta: 1 | -1): void {
    const [map, id] = e.kind === 'prediction' ? [this.pendingPredictions, e.row.id] : [this.pendingFeedback, e.item.predictionId];
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
    if (this.head || this.memory.length > 0 || (this.spill && !this.spill.drained)) this.schedule(0);
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
    if (this.closed && this.head !== head) return true; // persisted by close() meanwhile
    this.commit(head);
    return true;
  }

  private takeBatch(): HeadBatch | undefined {
    if (this.memory.length > 0) return { entries: this.memory.splice(0, this.batchSize) };
    if (this.spill && !this.spill.drained) {
      const { entries, end, lines } = this.spill.readBatch(this.batchSize, (e) => this.drop(e));
      return { entries, file: { end, lines } };
    }
    return undefined;
  }

  private commit(head: HeadBatch): void {
    this.head = undefined;
    for (const e of head.entries) this.track(e, -1);
    if (head.entries.length > 0) this.committedSeq = head.entries[head.entries.length - 1].seq;
    if (head.file && this.spill) {
      this.spill.consume(head.file.end, head.file.lines);
      if (this.spill.drained) {
        this.spill.remove(); // memory is empty while spilling: everything accepted is now written
        this.spill = undefined;
      }
    }
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

  /**
   * On close: memory (and a head batch taken from it) goes in front of the spill file's unread rest; the
   * written prefix of the spill file is dropped.
   */
  private persistRemaining(): void {
    const first = [...(this.head && !this.head.file ? this.head.entries : []), ...this.memory];
    this.head = undefined;
    this.memory = [];
    if (this.spill) {
      this.spill.rewriteWithPrefix(first);
    } else if (first.length > 0) {
      const file = SpillFile.create(this.spillPath);
      file.append(first);
      file.sync();
      file.close();
    }
    this.counters.spilledTotal += first.length;
    this.spill = undefined;
  }
}
