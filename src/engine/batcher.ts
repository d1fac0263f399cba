/**
 * Dynamic batching in front of a batched computation (the forward pass), after TEI's queue:
 *
 *  - requests enqueue one or more items (windows); admission is all-or-nothing against a bounded
 *    capacity, and a full queue fails fast with ToxScopeError('overloaded') carrying a retry-after hint;
 *  - one batch runs at a time; while idle, the first item waits at most `maxWaitMs` for company, and a
 *    batch starts at once when the queue already holds a full batch; after a batch, the next one starts
 *    immediately with whatever has queued meanwhile;
 *  - fair between requests: each batch is anchored on the oldest waiting item of the request served least
 *    recently (one never served first, ties by arrival), so a request with many windows is served in turns with
 *    the others instead of ahead of them; a request contributes at most `requestSliceTokens` tokens to one
 *    batch (at least one item), so a newcomer waits for at most one such slice of a big request;
 *  - the batch is filled with the items closest to the anchor in length, so padding stays small:
 *    cost = items x longest item <= `maxBatchTokens`, items <= `maxBatchItems`, and the longest item at most
 *    twice the shortest plus PADDING_SLACK tokens (a short text is never padded to a long window's length);
 *  - an item with a group (`groupOf`) shares a batch only with items of its group;
 *  - requests whose client went away (AbortSignal) or whose deadline passed leave the queue and are
 *    never computed; a request past its deadline fails with ToxScopeError('timeout');
 *  - drain() refuses new work and resolves once everything queued has run.
 *
 * Generic over the work function, so it is tested with a real computation.
 */
import { ToxScopeError } from '../errors.js';

/**
 * Padding a batch may add beyond twice its shortest item, in tokens: short texts of different lengths still batch
 * together, but a 10-token text never rides in a 512-token window's batch (it would cost that window's time).
 */
export const PADDING_SLACK = 64;

export interface BatcherOptions<I, O> {
  /** runs one batch; must return one output per input, in order. Inputs arrive sorted by length. */
  process(inputs: I[]): Promise<O[]>;
  /** the length of an item in tokens */
  tokensOf(input: I): number;
  maxBatchItems: number;
  /** cap on items x longest item (the padded size of the forward pass) */
  maxBatchTokens: number;
  maxWaitMs: number;
  /** most items waiting (not counting the running batch), each counted at its `costOf` */
  capacity: number;
  /**
   * what one item counts against `capacity` (default 1): a sentence of a text scored on its own is a fraction of a
   * window's work, so a long text's many short parts do not make a request that can never be admitted
   */
  costOf?(input: I): number;
  /** deadline of a request from submission; 0 or Infinity = none */
  timeoutMs: number;
  /** most tokens one request puts into one batch (at least one item); default: no cap */
  requestSliceTokens?: number;
  /**
   * items with a group share a batch only with items of the same group, items without one only with each other
   * (a text suspected of crashing the engine runs alone, so that a death is blamed on it alone)
   */
  groupOf?(input: I): string | undefined;
  observer?: BatcherObserver;
}

/** What the batcher reports, for metrics. */
export interface BatcherObserver {
  queueDepth?(items: number): void;
  queueWait?(seconds: number): void;
  batch?(info: { items: number; tokens: number; paddedTokens: number; seconds: number }): void;
  rejected?(reason: 'overloaded' | 'aborted' | 'timeout' | 'draining'): void;
}

export interface SubmitOptions {
  /** the client went away: drop the request's queued items */
  signal?: AbortSignal;
  /** this request's deadline instead of the batcher's (0 = none) */
  timeoutMs?: number;
}

export interface BatchedResult<O> {
  outputs: O[];
  /** longest time one of the request's items waited before its batch started */
  queueMs: number;
  /** wall time of the batches that computed the request's items */
  inferenceMs: number;
}

interface Request<I, O> {
  items: Item<I, O>[];
  /** turn of the last batch that took items of this request (0: none yet) */
  lastServed: number;
  remaining: number;
  outputs: O[];
  queueMs: number;
  batchesSeen: Set<number>;
  inferenceMs: number;
  done: boolean;
  resolve(r: BatchedResult<O>): void;
  reject(e: unknown): void;
  cleanup(): void;
}

interface Item<I, O> {
  input: I;
  tokens: number;
  index: number;
  enqueuedAt: number;
  request: Request<I, O>;
}

export class Batcher<I, O> {
  private readonly opts: BatcherOptions<I, O>;
  private queue: Item<I, O>[] = [];
  private running = false;
  private timer: NodeJS.Timeout | null = null;
  private draining = false;
  private idleWaiters: (() => void)[] = [];
  private batchSeq = 0;
  /** batches taken so far (the turn counter of the fairness rule) */
  private turn = 0;
  /** exponentially weighted items per second, for the retry-after hint */
  private itemsPerSecond = 0;

  constructor(opts: BatcherOptions<I, O>) {
    if (!(opts.maxBatchItems >= 1) || !(opts.maxBatchTokens >= 1) || !(opts.capacity >= 1) || !(opts.maxWaitMs >= 0))
      throw new ToxScopeError('validation', 'batcher: maxBatchItems, maxBatchTokens and capacity must be >= 1, maxWaitMs >= 0');
    this.opts = opts;
  }

  /** items waiting, not counting the running batch */
  get depth(): number {
    return this.queue.length;
  }

  /** what the waiting items count against the capacity */
  private queuedCost(): number {
    if (!this.opts.costOf) return this.queue.length;
    let sum = 0;
    for (const it of this.queue) sum += this.opts.costOf(it.input);
    return sum;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Seconds after which a retry is likely to be admitted, from recent throughput. */
  retryAfterSeconds(extra = 0): number {
    const rate = this.itemsPerSecond > 0 ? this.itemsPerSecond : this.opts.maxBatchItems;
    return Math.min(60, Math.max(1, Math.ceil((this.queue.length + extra) / rate)));
  }

  /**
   * Fail fast, before any work on the request (tokenizing), when `items` more cannot fit the queue now.
   * submit() checks again with the exact count.
   */
  assertRoom(items: number): void {
    if (this.draining) throw new ToxScopeError('unavailable', 'the service is shutting down and accepts no new work');
    if (this.queuedCost() + items > this.opts.capacity) throw this.overloaded(items);
  }

  private overloaded(items: number): ToxScopeError {
    this.opts.observer?.rejected?.('overloaded');
    const retryAfter = this.retryAfterSeconds(items);
    const waiting = Math.ceil(this.queuedCost());
    return new ToxScopeError('overloaded', `queue full (${waiting} of ${this.opts.capacity} waiting, ${Math.ceil(items)} more asked): retry in ${retryAfter} s`, {
      retryAfterSeconds: retryAfter,
    });
  }

  /** Queue the items of one request; resolves with their outputs in submission order. */
  submit(inputs: readonly I[], { signal, timeoutMs }: SubmitOptions = {}): Promise<BatchedResult<O>> {
    if (this.draining) {
      this.opts.observer?.rejected?.('draining');
      return Promise.reject(new ToxScopeError('unavailable', 'the service is shutting down and accepts no new work'));
    }
    if (signal?.aborted) {
      this.opts.observer?.rejected?.('aborted');
      return Promise.reject(new ToxScopeError('aborted', 'the client went away before the request was queued'));
    }
    if (inputs.length === 0) return Promise.resolve({ outputs: [], queueMs: 0, inferenceMs: 0 });
    const tokens = inputs.map((x) => this.opts.tokensOf(x));
    const tooBig = tokens.findIndex((t) => t > this.opts.maxBatchTokens);
    if (tooBig >= 0)
      return Promise.reject(
        new ToxScopeError('payload_too_large', `item ${tooBig} has ${tokens[tooBig]} tokens, more than one batch holds (${this.opts.maxBatchTokens})`),
      );
    const cost = this.opts.costOf ? inputs.reduce((sum, x) => sum + this.opts.costOf!(x), 0) : inputs.length;
    if (this.queuedCost() + cost > this.opts.capacity) return Promise.reject(this.overloaded(cost));

    return new Promise<BatchedResult<O>>((resolve, reject) => {
      const now = performance.now();
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => this.fail(request, new ToxScopeError('aborted', 'the client went away'), 'aborted');
      const request: Request<I, O> = {
        items: [],
        lastServed: 0,
        remaining: inputs.length,
        outputs: new Array<O>(inputs.length),
        queueMs: 0,
        batchesSeen: new Set(),
        inferenceMs: 0,
        done: false,
        resolve,
        reject,
        cleanup: () => {
          if (timer) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        },
      };
      request.items = inputs.map((input, index) => ({ input, tokens: tokens[index], index, enqueuedAt: now, request }));
      const t = timeoutMs ?? this.opts.timeoutMs;
      if (t > 0 && Number.isFinite(t))
        timer = setTimeout(() => this.fail(request, new ToxScopeError('timeout', `request not answered within ${t} ms`), 'timeout'), t);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(...request.items);
      this.opts.observer?.queueDepth?.(this.queue.length);
      this.schedule();
    });
  }

  /** Refuse new work; resolve when the queue is empty and no batch runs. */
  drain(): Promise<void> {
    this.draining = true;
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    if (!this.running) this.startBatch();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private fail(request: Request<I, O>, error: ToxScopeError, reason: 'aborted' | 'timeout'): void {
    if (request.done) return;
    request.done = true;
    request.cleanup();
    const before = this.queue.length;
    this.queue = this.queue.filter((it) => it.request !== request);
    if (this.queue.length !== before) this.opts.observer?.queueDepth?.(this.queue.length);
    this.opts.observer?.rejected?.(reason);
    request.reject(error);
    this.maybeIdle();
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    if (this.draining || this.fullBatchWaiting() || this.opts.maxWaitMs === 0) {
      this.startBatch();
      return;
    }
    if (this.timer) return;
    const waited = performance.now() - this.queue[0].enqueuedAt;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.startBatch();
    }, Math.max(0, this.opts.maxWaitMs - waited));
  }

  private fullBatchWaiting(): boolean {
    if (this.queue.length >= this.opts.maxBatchItems) return true;
    let longest = 0;
    for (const it of this.queue) longest = Math.max(longest, it.tokens);
    return this.queue.length * longest >= this.opts.maxBatchTokens;
  }

  private startBatch(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.running) return;
    const batch = this.takeBatch();
    if (batch.length === 0) {
      this.maybeIdle();
      return;
    }
    this.running = true;
    void this.runBatch(batch).finally(() => {
      this.running = false;
      if (this.queue.length > 0) this.startBatch();
      else this.maybeIdle();
    });
  }

  /**
   * The anchor (the oldest item of the least recently served request) plus its nearest neighbours in length,
   * within the caps. Grows a range over the queue sorted by length around the anchor, toward whichever side is
   * closer in length, skipping items of requests that have put their slice into this batch already and items of
   * another group.
   */
  private takeBatch(): Item<I, O>[] {
    if (this.queue.length === 0) return [];
    const { maxBatchItems, maxBatchTokens } = this.opts;
    const slice = this.opts.requestSliceTokens ?? Infinity;
    let anchor = this.queue[0];
    for (const it of this.queue) if (it.request.lastServed < anchor.request.lastServed) anchor = it; // queue order: the first is the oldest
    const byLen = this.queue.slice().sort((a, b) => a.tokens - b.tokens);
    const at = byLen.indexOf(anchor);
    const chosen = [anchor];
    const taken = new Map<Request<I, O>, number>([[anchor.request, anchor.tokens]]);
    const group = this.opts.groupOf?.(anchor.input);
    const skip = (it: Item<I, O>) => {
      if (this.opts.groupOf && this.opts.groupOf(it.input) !== group) return true;
      const t = taken.get(it.request);
      return t !== undefined && t + it.tokens > slice;
    };
    const fits = (count: number, shortest: number, longest: number) =>
      count <= maxBatchItems && count * longest <= maxBatchTokens && longest <= 2 * shortest + PADDING_SLACK;
    let shortest = anchor.tokens;
    let longest = anchor.tokens;
    let lo = at - 1;
    let hi = at + 1;
    for (;;) {
      while (lo >= 0 && skip(byLen[lo])) lo--;
      while (hi < byLen.length && skip(byLen[hi])) hi++;
      const count = chosen.length + 1;
      const left = lo >= 0 && fits(count, byLen[lo].tokens, longest) ? byLen[lo] : null;
      const right = hi < byLen.length && fits(count, shortest, byLen[hi].tokens) ? byLen[hi] : null;
      if (!left && !right) break;
      const next = left && (!right || anchor.tokens - left.tokens <= right.tokens - anchor.tokens) ? left : right!;
      if (next === left) {
        lo--;
        shortest = next.tokens;
      } else {
        hi++;
        longest = next.tokens;
      }
      chosen.push(next);
      taken.set(next.request, (taken.get(next.request) ?? 0) + next.tokens);
    }
    const turn = ++this.turn;
    for (const r of taken.keys()) r.lastServed = turn;
    const set = new Set(chosen);
    this.queue = this.queue.filter((it) => !set.has(it));
    this.opts.observer?.queueDepth?.(this.queue.length);
    return byLen.filter((it) => set.has(it));
  }

  private async runBatch(batch: Item<I, O>[]): Promise<void> {
    const seq = ++this.batchSeq;
    const start = performance.now();
    for (const it of batch) {
      const waited = start - it.enqueuedAt;
      it.request.queueMs = Math.max(it.request.queueMs, waited);
      this.opts.observer?.queueWait?.(waited / 1000);
    }
    let outputs: O[];
    try {
      outputs = await this.opts.process(batch.map((it) => it.input));
      if (!Array.isArray(outputs) || outputs.length !== batch.length)
        throw new ToxScopeError('internal', `batch function returned ${Array.isArray(outputs) ? outputs.length : typeof outputs} outputs for ${batch.length} inputs`);
    } catch (e) {
      const error = e instanceof ToxScopeError ? e : new ToxScopeError('internal', `batch failed: ${(e as Error)?.message ?? String(e)}`, undefined, { cause: e });
      for (const it of batch) this.finishWithError(it.request, error);
      return;
    }
    const seconds = (performance.now() - start) / 1000;
    const tokens = batch.reduce((s, it) => s + it.tokens, 0);
    this.opts.observer?.batch?.({ items: batch.length, tokens, paddedTokens: batch.length * batch[batch.length - 1].tokens, seconds });
    const rate = batch.length / Math.max(seconds, 1e-6);
    this.itemsPerSecond = this.itemsPerSecond === 0 ? rate : 0.8 * this.itemsPerSecond + 0.2 * rate;
    batch.forEach((it, i) => {
      const r = it.request;
      if (r.done) return; // timed out or aborted while running: the result is dropped
      r.outputs[it.index] = outputs[i];
      if (!r.batchesSeen.has(seq)) {
        r.batchesSeen.add(seq);
        r.inferenceMs += seconds * 1000;
      }
      if (--r.remaining === 0) {
        r.done = true;
        r.cleanup();
        r.resolve({ outputs: r.outputs, queueMs: r.queueMs, inferenceMs: r.inferenceMs });
      }
    });
  }

  private finishWithError(request: Request<I, O>, error: ToxScopeError): void {
    if (request.done) return;
    request.done = true;
    request.cleanup();
    this.queue = this.queue.filter((it) => it.request !== request);
    request.reject(error);
  }

  private maybeIdle(): void {
    if (this.running || this.queue.length > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
