/**
 * The live classifier and readiness. Requests take `current()` once and keep it to the end, so a swap
 * (POST /admin/reload) never drops a request: the old classifier finishes what it has queued, then closes.
 *
 *   starting --ready()--> ready --swap()--> ready (new bundle) --draining()--> draining
 */
import { ToxScopeError } from '../errors.js';
import type { Classifier } from '../engine/classifier.js';
import type { BundleInfo } from './deps.js';

export type Readiness = 'starting' | 'ready' | 'draining';

export interface LoadedBundle {
  classifier: Classifier;
  info: BundleInfo;
}

export class ClassifierHost {
  private loaded: LoadedBundle | null = null;
  private state: Readiness = 'starting';
  private swapping: Promise<unknown> | null = null;

  get readiness(): Readiness {
    return this.state;
  }

  /** Why the service is not ready, or null when it is. */
  notReadyReason(): string | null {
    if (this.state === 'starting') return 'the model is loading and warming up';
    if (this.state === 'draining') return 'the service is shutting down';
    return this.broken();
  }

  /**
   * Why the process should be restarted (liveness), or null: the serving bundle's engine died (its worker
   * thread crashed or exited), so nothing can be scored until a new engine is loaded. Starting and draining
   * are not failures.
   */
  broken(): string | null {
    const why = this.state === 'ready' ? this.loaded?.classifier.failure() : null;
    return why ? `the engine of bundle ${this.loaded!.info.version} is down: ${why}` : null;
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
  }

  /**
   * Replace the bundle: `load` builds and warms the new one while the old keeps serving; on success new
   * requests go to the new one and the old drains then closes; on failure nothing changes.
   * One swap at a time ('conflict' otherwise). A shutdown that begins while `load` runs wins: the new
   * bundle is closed and the swap fails with 'unavailable'.
   */
  async swap(load: () => Promise<LoadedBundle>): Promise<{ previous: BundleInfo | null; current: BundleInfo }> {
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
    await this.swapping?.catch(() => undefined);
    if (this.loaded) await this.loaded.classifier.close();
  }
}
