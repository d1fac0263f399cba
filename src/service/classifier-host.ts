/**
 * The live classifier and readiness. Requests take `current()` once and keep it to the end, so a swap
 * (POST /admin/reload) never drops a request: the old classifier finishes what it has queued, then closes.
 *
 *   starting --ready()--> ready --swap()--> ready (new bundle) --draining()--> draining
 *
 * The serving engine's worker thread can die (a crash, an OOM of its heap, a terminate). With `restart`
 * options the host repairs it in-process: it notices the death (on the next request, readiness probe, or
 * within `checkMs` when idle), answers readiness 503 while it reloads the same bundle with a fresh engine after
 * a backoff (doubling from `backoffMs`), and swaps it in. Liveness stays 200 meanwhile (the process is
 * repairing itself); after `attempts` failed restarts in a row it gives up and liveness fails too, so the
 * orchestrator restarts the process. Requests in flight at the death get the engine's 'unavailable' error
 * (503, retryable), never a hang.
 */
import { ToxScopeError } from '../errors.js';
import type { Classifier } from '../engine/classifier.js';
import type { BundleInfo } from './deps.js';

export type Readiness = 'starting' | 'ready' | 'draining';

export interface LoadedBundle {
  classifier: Classifier;
  info: BundleInfo;
  /** the directory it was loaded from (what a restart of its engine reloads) */
  source?: string;
}

export type EngineRestartEvent =
  | { type: 'died'; version: string; reason: string; attempt: number; attempts: number; inMs: number }
  | { type: 'restarted'; version: string; attempt: number }
  | { type: 'failed'; version: string; attempt: number; error: unknown }
  | { type: 'gave_up'; version: string; reason: string; attempts: number };

export interface EngineRestartOptions {
  /** load the bundle whose engine died again, with a fresh engine, warmed up */
  reload: (dead: LoadedBundle) => Promise<LoadedBundle>;
  /** restarts tried in a row before giving up (then liveness fails); 0: never restart */
  attempts: number;
  /** wait before the first attempt, doubled for each next one (at most 60 s) */
  backoffMs: number;
  /** a restarted engine that lived this long starts the count of attempts again (default 10 min) */
  stableMs?: number;
  /** how often an idle host looks at its engine (default 1 s) */
  checkMs?: number;
  onEvent?: (event: EngineRestartEvent) => void;
}

export class ClassifierHost {
  private loaded: LoadedBundle | null = null;
  private state: Readiness = 'starting';
  private swapping: Promise<unknown> | null = null;
  private restarting: { version: string; reason: string; attempt: number } | null = null;
  private gaveUp: string | null = null;
  private attemptsInRow = 0;
  private lastRestartAt = 0;
  private checkTimer: NodeJS.Timeout | undefined;
  private wakeRestart: (() => void) | undefined;

  constructor(private readonly restart?: EngineRestartOptions) {}

  get readiness(): Readiness {
    return this.state;
  }

  /** Why the service is not ready, or null when it is. */
  notReadyReason(): string | null {
    if (this.state === 'starting') return 'the model is loading and warming up';
    if (this.state === 'draining') return 'the service is shutting down';
    const broken = this.broken();
    if (broken) return broken;
    const r = this.restarting;
    if (r) return `the engine of bundle ${r.version} died (${r.reason}): restarting it (attempt ${r.attempt} of ${this.restart!.attempts})`;
    return null;
  }

  /**
   * Why the process should be restarted (liveness), or null: the serving bundle's engine died (its worker
   * thread crashed or exited) and is not being restarted in-process (no restarts configured, or they all
   * failed), so nothing can be scored until a new engine is loaded. Starting, draining and restarting are not
   * failures.
   */
  broken(): string | null {
    if (this.state !== 'ready') return null;
    if (this.gaveUp) return this.gaveUp;
    const why = this.loaded?.classifier.failure();
    if (!why) return null;
    if (this.restart && this.restart.attempts > 0) {
      this.beginRestart(this.loaded!, why);
      return this.gaveUp;
    }
    return `the engine of bundle ${this.loaded!.info.version} is down: ${why}`;
  }

  /** A restart of a dead engine is under way (readiness 503 meanwhile). */
  get restartingEngine(): boolean {
    return this.restarting !== null;
  }

  /** The classifier serving new requests; 'unavailable' before warm-up and while draining. */
  current(): LoadedBundle {
    const why = this.notReadyReason();
    if (why !== null || this.loaded === null) throw new ToxScopeError('unavailable', why ?? 'no bundle is loaded');
    return this.loaded;
  }

  /** The loaded bundle even while draining (for /info); null before the first load. */
  peek(): LoadedBundle | null {
    return this.loaded;
  }

  /** First bundle in, after its warm-up: the service becomes ready. */
  ready(bundle: LoadedBundle): void {
    this.loaded = bundle;
    if (this.state === 'starting') this.state = 'ready';
    if (this.restart && this.restart.attempts > 0 && !this.checkTimer) {
      // an idle service notices a dead engine too (nothing else would call broken())
      this.checkTimer = setInterval(() => this.broken(), this.restart.checkMs ?? 1000);
      this.checkTimer.unref();
    }
  }

  /**
   * Replace the bundle: `load` builds and warms the new one while the old keeps serving; on success new
   * requests go to the new one and the old drains then closes; on failure nothing changes.
   * One swap at a time ('conflict' otherwise). A shutdown that begins while `load` runs wins: the new
   * bundle is closed and the swap fails with 'unavailable'.
   */
  async swap(load: () => Promise<LoadedBundle>): Promise<{ previous: BundleInfo | null; current: BundleInfo }> {
    if (this.restarting) throw new ToxScopeError('unavailable', 'the engine is being restarted: reload once GET /readyz answers', { retryAfterSeconds: 5 });
    if (this.swapping) throw new ToxScopeError('conflict', 'a reload is already in progress');
    if (this.state === 'draining') throw new ToxScopeError('unavailable', 'the service is shutting down');
    // ready() would overwrite (and leak) a bundle swapped in before the first one is warm
    if (this.state === 'starting') throw new ToxScopeError('unavailable', 'the first bundle is still loading: reload once GET /readyz answers');
    const run = (async () => {
      const next = await load();
      if (this.state === 'draining') {
        await next.classifier.close().catch(() => undefined);
        throw new ToxScopeError('unavailable', 'the service began shutting down during the reload: the new bundle was closed');
      }
      const previous = this.loaded;
      this.loaded = next;
      if (previous) void previous.classifier.close().catch(() => undefined);
      return { previous: previous?.info ?? null, current: next.info };
    })();
    this.swapping = run;
    try {
      return await run;
    } finally {
      this.swapping = null;
    }
  }

  /** Graceful shutdown: readiness goes 503, a reload in progress ends (its bundle closed), queued work finishes. */
  async drain(): Promise<void> {
    this.state = 'draining';
    if (this.checkTimer) clearInterval(this.checkTimer);
    this.checkTimer = undefined;
    this.wakeRestart?.(); // a restart waiting out its backoff stops
    await this.swapping?.catch(() => undefined);
    if (this.loaded) await this.loaded.classifier.close();
  }

  private draining(): boolean {
    return this.state === 'draining';
  }

  /** Reload the bundle of a dead engine, with backoff, until it serves again or the attempts run out. */
  private beginRestart(dead: LoadedBundle, reason: string): void {
    if (this.restarting || this.gaveUp || this.swapping) return; // one repair at a time; a reload in progress replaces it
    const opts = this.restart!;
    const version = dead.info.version;
    if (this.lastRestartAt > 0 && Date.now() - this.lastRestartAt > (opts.stableMs ?? 600_000)) this.attemptsInRow = 0;
    this.restarting = { version, reason, attempt: this.attemptsInRow + 1 };
    const run = (async () => {
      for (;;) {
        const attempt = ++this.attemptsInRow;
        if (attempt > opts.attempts) {
          this.gaveUp = `the engine of bundle ${version} is down: ${reason}; ${opts.attempts} restarts in a row failed`;
          opts.onEvent?.({ type: 'gave_up', version, reason, attempts: opts.attempts });
          return;
        }
        this.restarting = { version, reason, attempt };
        const inMs = Math.min(opts.backoffMs * 2 ** (attempt - 1), 60_000);
        opts.onEvent?.({ type: 'died', version, reason, attempt, attempts: opts.attempts, inMs });
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, inMs);
          this.wakeRestart = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wakeRestart = undefined;
        if (this.draining()) return;
        let next: LoadedBundle;
        try {
          next = await opts.reload(dead);
        } catch (error) {
          opts.onEvent?.({ type: 'failed', version, attempt, error });
          continue;
        }
        if (this.draining()) {
          await next.classifier.close().catch(() => undefined);
          return;
        }
        this.loaded = next;
        this.lastRestartAt = Date.now();
        opts.onEvent?.({ type: 'restarted', version, attempt });
        void dead.classifier.close().catch(() => undefined);
        return;
      }
    })();
    this.swapping = run;
    void run.finally(() => {
      this.restarting = null;
      if (this.swapping === run) this.swapping = null;
    });
  }
}
