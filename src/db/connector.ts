/**
 * The database as the service sees it: opened and migrated in the background, retried with backoff until it
 * answers, so that the service starts (and classifies, journaling its writes) while the database is away.
 *
 *   connecting --open + migrate succeed--> up --close()--> closed
 *        ^ retry with backoff on failure
 *
 * Until it is up, `repository` answers every call with an 'unavailable' error (transient: the write queue
 * keeps its rows and retries; HTTP answers 503); `onUp` runs each time it comes up (wake the write queue,
 * re-read the threshold overrides).
 *
 * Once up, a cheap ping (`select 1`, every `pingMs`, bounded by `pingTimeoutMs`) keeps `reachable` current even
 * when nothing is written, so readiness and `toxscope_database_up` notice an outage of an idle service within
 * seconds. A database whose handle cannot answer any more (the embedded PGlite's worker thread died) is closed
 * and opened again, with the same backoff.
 */
import { ToxScopeError } from '../errors.js';
import type { DbHandle } from './client.js';
import { describeDbError, type DbErrorDescription } from './db-error.js';
import { createRepository, type Repository } from './repository.js';

export type DatabaseState = 'connecting' | 'up' | 'closed';

export interface DatabaseConnectorOptions {
  /** Opens and migrates the database (createDb); called again after each failure. */
  open: () => Promise<DbHandle>;
  /** Backoff between attempts: doubles from min to max (defaults 500 ms, 15 s). */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** An attempt failed (described without SQL parameters); the next one is in `retryInMs`. */
  onError?: (error: DbErrorDescription, info: { attempt: number; retryInMs: number }) => void;
  /** The database is open and migrated (each time it comes up). */
  onUp?: (handle: DbHandle) => void;
  /** Ping period once up, in ms (0 or absent: no ping; `reachable` then stays true while up). */
  pingMs?: number;
  /** A ping not answered within this is a failure (default: pingMs, at most 5 s). */
  pingTimeoutMs?: number;
  /** The ping's outcome changed: unreachable (with why) or reachable again. */
  onReachability?: (reachable: boolean, error?: DbErrorDescription) => void;
}

// Every Repository method, so the gate below cannot miss one the interface gains.
const METHODS = {
  insertPredictions: true,
  recordFeedback: true,
  recordThresholdChange: true,
  recordThresholdChanges: true,
  thresholdOverrides: true,
  attributeOverrides: true,
  listThresholdChanges: true,
  confusionByLanguage: true,
  feedbackTotals: true,
  saveF1Windows: true,
  latestF1Windows: true,
  labeledScores: true,
  scoreBins: true,
  f1WindowHistory: true,
  predictionForText: true,
  recordAdminEvent: true,
  listAdminEvents: true,
  ping: true,
} satisfies Record<keyof Repository, true>;

export class DatabaseConnector {
  private current: { handle: DbHandle; repo: Repository } | undefined;
  private status: DatabaseState = 'connecting';
  private attempts = 0;
  private timer: NodeJS.Timeout | undefined;
  private attempt: Promise<void> | undefined;
  private lastFailure: DbErrorDescription | undefined;
  private readonly waiters = new Set<() => void>();
  private pingTimer: NodeJS.Timeout | undefined;
  private pinging = false;
  private lastPingOk = true;
  private pingQuery: Promise<void> | undefined;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;
  /** The repository over the database once it is up; 'unavailable' errors before. */
  readonly repository: Repository;

  constructor(private readonly options: DatabaseConnectorOptions) {
    this.retryMinMs = options.retryMinMs ?? 500;
    this.retryMaxMs = options.retryMaxMs ?? 15_000;
    const gate = {} as Record<string, unknown>;
    for (const name of Object.keys(METHODS) as (keyof Repository)[]) {
      gate[name] = (...args: unknown[]) => {
        const repo = this.current?.repo;
        if (!repo) return Promise.reject(this.notUp());
        return (repo[name] as (...a: unknown[]) => Promise<unknown>)(...args);
      };
    }
    this.repository = gate as unknown as Repository;
  }

  get state(): DatabaseState {
    return this.status;
  }

  /** The open handle (undefined until up). */
  get handle(): DbHandle | undefined {
    return this.current?.handle;
  }

  /** Whether the database answered its last ping (true while up and not pinged yet; false unless up). */
  get reachable(): boolean {
    return this.status === 'up' && this.lastPingOk;
  }

  /** Why the last attempt failed (undefined once up). */
  get lastError(): DbErrorDescription | undefined {
    return this.lastFailure;
  }

  /** Starts connecting; resolves after the first attempt, whether it succeeded or not. */
  start(): Promise<void> {
    if (this.status !== 'connecting' || this.attempt || this.timer) return this.attempt ?? Promise.resolve();
    return this.tryOnce();
  }

  /** Resolves true once up, or false after timeoutMs (or when closed) without waiting longer. */
  whenUp(timeoutMs: number): Promise<boolean> {
    if (this.status === 'up') return Promise.resolve(true);
    if (this.status === 'closed') return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve(this.status === 'up');
      };
      const timer = setTimeout(done, timeoutMs);
      timer.unref();
      this.waiters.add(done);
    });
  }

  /** Stops retrying and closes the database (waits for an attempt in flight). */
  async close(): Promise<void> {
    if (this.status === 'closed') return;
    this.status = 'closed';
    this.stopPing();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.attempt?.catch(() => undefined);
    for (const w of [...this.waiters]) w();
    const current = this.current;
    this.current = undefined;
    await current?.handle.close().catch(() => undefined);
  }

  private notUp(): ToxScopeError {
    if (this.status === 'closed') return new ToxScopeError('unavailable', 'the database is closed (shutting down)');
    const why = this.lastFailure ? `: ${this.lastFailure.message}${this.lastFailure.code ? ` (${this.lastFailure.code})` : ''}` : '';
    return new ToxScopeError('unavailable', `the database is not reachable yet${why}`, { retryAfterSeconds: 5 });
  }

  /** Pings now (what the timer does every pingMs); resolves with whether the database answered. */
  async ping(): Promise<boolean> {
    const current = this.current;
    if (this.status !== 'up' || !current) return false;
    const timeoutMs = this.options.pingTimeoutMs ?? Math.min(this.options.pingMs || 5_000, 5_000);
    let timer: NodeJS.Timeout | undefined;
    let error: unknown;
    try {
      // at most one ping query outstanding: a driver that queues queries while it cannot connect must not
      // collect a ping per period in front of the real work
      const query = (this.pingQuery ??= current.repo.ping().finally(() => (this.pingQuery = undefined)));
      await Promise.race([
        query,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(Object.assign(new Error(`no answer to a ping within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs);
          timer.unref();
        }),
      ]);
    } catch (e) {
      error = e;
    } finally {
      clearTimeout(timer);
    }
    if (this.current !== current || this.status !== 'up') return false; // closed or reopened meanwhile
    const ok = error === undefined;
    if (ok !== this.lastPingOk) {
      this.lastPingOk = ok;
      this.options.onReachability?.(ok, ok ? undefined : describeDbError(error));
    }
    // a handle that can never answer again (the embedded database's worker died): open a new one
    const broken = current.handle.failure?.();
    if (!ok && broken) {
      this.lastFailure = { message: broken };
      this.stopPing();
      this.current = undefined;
      this.status = 'connecting';
      await current.handle.close().catch(() => undefined);
      void this.tryOnce();
    }
    return ok;
  }

  private startPing(): void {
    this.stopPing();
    const every = this.options.pingMs ?? 0;
    if (every <= 0) return;
    this.pingTimer = setInterval(() => {
      if (this.pinging) return;
      this.pinging = true;
      void this.ping().finally(() => (this.pinging = false));
    }, every);
    this.pingTimer.unref();
  }

  private stopPing(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = undefined;
  }

  private tryOnce(): Promise<void> {
    this.attempts += 1;
    const attempt = (async () => {
      let handle: DbHandle;
      try {
        handle = await this.options.open();
      } catch (e) {
        this.lastFailure = describeDbError(e);
        if (this.status === 'closed') return;
        const retryInMs = Math.min(this.retryMaxMs, this.retryMinMs * 2 ** Math.min(this.attempts - 1, 20));
        this.options.onError?.(this.lastFailure, { attempt: this.attempts, retryInMs });
        this.timer = setTimeout(() => {
          this.timer = undefined;
          void this.tryOnce();
        }, retryInMs);
        this.timer.unref();
        return;
      }
      if (this.status === 'closed') {
        await handle.close().catch(() => undefined);
        return;
      }
      this.current = { handle, repo: createRepository(handle.db) };
      this.status = 'up';
      this.lastFailure = undefined;
      this.attempts = 0;
      this.lastPingOk = true;
      this.startPing();
      for (const w of [...this.waiters]) w();
      this.options.onUp?.(handle);
    })();
    const tracked: Promise<void> = attempt.finally(() => {
      if (this.attempt === tracked) this.attempt = undefined;
    });
    this.attempt = tracked;
    return tracked;
  }
}
