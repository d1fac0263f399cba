import { afterEach, describe, expect, it, vi } from 'vitest';
import { Batcher, BatcherOptions } from '../src/engine/batcher.js';
import { ToxScopeError } from '../src/errors.js';

/**
 * The work function is a real batched computation shaped like the forward pass: it pads the batch to a
 * [B, T] matrix and computes, per row, a position-weighted sum over real tokens. Each output depends only
 * on its own row, so a correct batcher returns the same values however it groups the rows.
 */
type Seq = number[];
const weightedSum = (s: Seq) => s.reduce((acc, x, t) => acc + x * (t + 1), 0);

function paddedWork(log: Seq[][]) {
  return async (batch: Seq[]): Promise<number[]> => {
    log.push(batch);
    const T = Math.max(...batch.map((s) => s.length));
    const padded = new Float64Array(batch.length * T); // [B, T]
    const mask = new Uint8Array(batch.length * T); // [B, T]
    batch.forEach((s, b) => s.forEach((x, t) => ((padded[b * T + t] = x), (mask[b * T + t] = 1))));
    await new Promise((r) => setImmediate(r)); // yield like an async session.run
    return batch.map((_, b) => {
      let acc = 0;
      for (let t = 0; t < T; t++) acc += mask[b * T + t] * padded[b * T + t] * (t + 1);
      return acc;
    });
  };
}

const seq = (len: number, start = 1): Seq => Array.from({ length: len }, (_, i) => start + i);

function make(log: Seq[][], over: Partial<BatcherOptions<Seq, number>> = {}) {
  return new Batcher<Seq, number>({
    process: paddedWork(log),
    tokensOf: (s) => s.length,
    maxBatchItems: 4,
    maxBatchTokens: 64,
    maxWaitMs: 0,
    capacity: 100,
    timeoutMs: 0,
    ...over,
  });
}

const rejection = async (p: Promise<unknown>): Promise<ToxScopeError> => {
  try {
    await p;
  } catch (e) {
    if (e instanceof ToxScopeError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
};

afterEach(() => vi.useRealTimers());

describe('Batcher', () => {
  it('returns each request its own outputs in submission order, whatever the grouping', async () => {
    const log: Seq[][] = [];
    const b = make(log, { maxWaitMs: 5 });
    const requests = [[seq(3), seq(9, 4)], [seq(1, 7)], [seq(12, 2), seq(2), seq(5, 3)], [seq(6)]];
    const results = await Promise.all(requests.map((r) => b.submit(r)));
    results.forEach((res, i) => expect(res.outputs).toEqual(requests[i].map(weightedSum)));
    expect(log.length).toBeLessThan(7); // 7 items were grouped into fewer forward passes
  });

  it('never exceeds the item cap or the padded token budget, and hands batches over sorted by length', async () => {
    const log: Seq[][] = [];
    const b = make(log, { maxBatchItems: 3, maxBatchTokens: 24, maxWaitMs: 2 });
    const lengths = [1, 12, 3, 8, 2, 7, 5, 11, 4, 6, 9, 10, 1, 2];
    const out = await Promise.all(lengths.map((n, i) => b.submit([seq(n, i)])));
    out.forEach((r, i) => expect(r.outputs[0]).toBe(weightedSum(seq(lengths[i], i))));
    for (const batch of log) {
      const lens = batch.map((s) => s.length);
      expect(batch.length).toBeLessThanOrEqual(3);
      expect(batch.length * Math.max(...lens)).toBeLessThanOrEqual(24);
      expect(lens).toEqual([...lens].sort((x, y) => x - y));
    }
    expect(log.flat().length).toBe(lengths.length);
  });

  it('groups items of similar length so padding stays small', async () => {
    const log: Seq[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const work = paddedWork(log);
    const b = make(log, { maxBatchItems: 2, maxBatchTokens: 1000, process: async (x) => (await gate, work(x)) });
    const busy = b.submit([seq(5), seq(5)]); // a full batch starts at once and holds the engine
    // queued meanwhile: the oldest (len 10) must be paired with its nearest length (11), not with 1
    const rest = [10, 1, 50, 11, 2, 49].map((n) => b.submit([seq(n)]));
    release();
    await Promise.all([busy, ...rest]);
    expect(log.map((batch) => batch.map((s) => s.length))).toEqual([[5, 5], [10, 11], [1, 2], [49, 50]]);
  });

  it('puts an item with a group only in batches of its group (a suspect text runs alone)', async () => {
    const log: Seq[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const work = paddedWork(log);
    // the group is the first token: 100 and 200 are two suspects, the others have none
    const groupOf = (s: Seq) => (s[0] >= 100 ? String(s[0]) : undefined);
    const b = make(log, { maxBatchItems: 8, maxBatchTokens: 1000, groupOf, process: async (x) => (await gate, work(x)) });
    const busy = b.submit([seq(4)]);
    const rest = [b.submit([seq(4), seq(4, 100), seq(5, 100), seq(4, 200), seq(5)]), b.submit([seq(4, 200), seq(3)])];
    release();
    const outputs = await Promise.all([busy, ...rest]);
    expect(log.map((batch) => batch.map((s) => s[0]))).toEqual([[1], [1, 1, 1], [100, 100], [200, 200]]);
    expect(outputs[1].outputs).toEqual([seq(4), seq(4, 100), seq(5, 100), seq(4, 200), seq(5)].map(weightedSum));
  });

  it('starts a full batch at once but lets a partial batch wait up to maxWaitMs', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const log: Seq[][] = [];
    const b = make(log, { maxBatchItems: 2, maxWaitMs: 1000 });
    let doneA = false;
    const a = b.submit([seq(2)]).then((r) => ((doneA = true), r));
    await vi.advanceTimersByTimeAsync(999);
    expect(doneA).toBe(false);
    expect(log.length).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    await a;
    expect(doneA).toBe(true);

    const full = b.submit([seq(3), seq(4)]); // a full batch: no waiting
    await vi.advanceTimersByTimeAsync(0);
    expect((await full).outputs).toEqual([weightedSum(seq(3)), weightedSum(seq(4))]);
  });

  it('fails fast with overloaded and a retry-after hint when the queue is full, admitting all or nothing', async () => {
    const log: Seq[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const work = paddedWork(log);
    const b = make(log, { capacity: 3, maxBatchItems: 1, process: async (x) => (await gate, work(x)) });
    const first = b.submit([seq(1)]); // runs (blocked on the gate)
    await new Promise((r) => setImmediate(r));
    const queued = b.submit([seq(2), seq(3)]); // 2 of 3 queue slots
    const e = await rejection(b.submit([seq(4), seq(5)])); // would need 4
    expect(e.kind).toBe('overloaded');
    expect(e.details?.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(b.depth).toBe(2);
    release();
    expect((await first).outputs).toEqual([weightedSum(seq(1))]);
    expect((await queued).outputs).toEqual([weightedSum(seq(2)), weightedSum(seq(3))]);
    expect(log.flat().map((s) => s.length)).toEqual([1, 2, 3]);
  });

  it('counts each item at its cost against the capacity: many cheap items fit where as many whole ones do not', async () => {
    const log: Seq[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const work = paddedWork(log);
    // an item of length 1 costs a quarter (a short part of a text), longer ones cost 1 (a window)
    const b = make(log, { capacity: 3, maxBatchItems: 1, costOf: (x) => (x.length === 1 ? 0.25 : 1), process: async (x) => (await gate, work(x)) });
    const first = b.submit([seq(2)]); // runs (blocked on the gate)
    await new Promise((r) => setImmediate(r));
    const cheap = b.submit([seq(2), ...Array.from({ length: 8 }, () => seq(1))]); // 1 + 8 x 0.25 = 3 of 3
    expect(b.depth).toBe(9);
    const e = await rejection(b.submit([seq(1)])); // 0.25 more does not fit
    expect(e.kind).toBe('overloaded');
    expect(e.message).toMatch(/3 of 3 waiting, 1 more asked/);
    release();
    await first;
    expect((await cheap).outputs).toHaveLength(9);
  });

  it('drops requests whose client went away before their batch ran', async () => {
    const log: Seq[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const work = paddedWork(log);
    const b = make(log, { maxBatchItems: 1, process: async (x) => (await gate, work(x)) });
    const running = b.submit([seq(1)]);
    await new Promise((r) => setImmediate(r));
    const client = new AbortController();
    const gone = b.submit([seq(7), seq(8)], { signal: client.signal });
    const stays = b.submit([seq(3)]);
    client.abort();
    const e = await rejection(gone);
    expect(e.kind).toBe('aborted');
    expect(b.depth).toBe(1);
    release();
    await running;
    await stays;
    expect(log.flat().map((s) => s.length)).toEqual([1, 3]); // 7 and 8 never computed
    expect((await rejection(b.submit([seq(2)], { signal: AbortSignal.abort() }))).kind).toBe('aborted');
  });

  it('times a request out and never computes its queued items', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const log: Seq[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const work = paddedWork(log);
    const b = make(log, { maxBatchItems: 1, timeoutMs: 500, process: async (x) => (await gate, work(x)) });
    const slow = rejection(b.submit([seq(1)]));
    const waiting = rejection(b.submit([seq(2)]));
    await vi.advanceTimersByTimeAsync(500);
    expect((await slow).kind).toBe('timeout');
    const w = await waiting;
    expect(w.kind).toBe('timeout');
    expect(w.message).toContain('500 ms');
    release();
    vi.useRealTimers();
    await new Promise((r) => setImmediate(r));
    expect(log.flat().map((s) => s.length)).toEqual([1]);
  });

  it('rejects every request of a failing batch and keeps serving', async () => {
    const log: Seq[][] = [];
    const work = paddedWork(log);
    const b = make(log, {
      maxBatchItems: 8,
      maxWaitMs: 1,
      process: async (x) => {
        if (x.some((s) => s.length === 13)) throw new Error('poisoned row');
        return work(x);
      },
    });
    const [a, c] = await Promise.allSettled([b.submit([seq(13)]), b.submit([seq(2)])]);
    expect(a.status).toBe('rejected');
    expect(c.status).toBe('rejected');
    expect(((a as PromiseRejectedResult).reason as ToxScopeError).kind).toBe('internal');
    expect(((a as PromiseRejectedResult).reason as ToxScopeError).message).toContain('poisoned row');
    expect((await b.submit([seq(4)])).outputs).toEqual([weightedSum(seq(4))]);
  });

  it('refuses an item larger than one batch can hold', async () => {
    const b = make([], { maxBatchTokens: 10 });
    expect((await rejection(b.submit([seq(11)]))).kind).toBe('payload_too_large');
  });

  it('drains: refuses new work and resolves after everything queued has been answered', async () => {
    const log: Seq[][] = [];
    const b = make(log, { maxBatchItems: 2, maxWaitMs: 50 });
    const pending = [b.submit([seq(3)]), b.submit([seq(4), seq(5)]), b.submit([seq(6)])];
    const drained = b.drain();
    expect((await rejection(b.submit([seq(1)]))).kind).toBe('unavailable');
    await drained;
    expect(b.depth).toBe(0);
    const outs = await Promise.all(pending);
    expect(outs.map((o) => o.outputs)).toEqual([[weightedSum(seq(3))], [weightedSum(seq(4)), weightedSum(seq(5))], [weightedSum(seq(6))]]);
  });

  it('reports queue wait and inference time per request and batch sizes to the observer', async () => {
    const sizes: number[] = [];
    const b = make([], { maxWaitMs: 1, observer: { batch: (x) => sizes.push(x.items) } });
    const r = await b.submit([seq(2), seq(3)]);
    expect(r.queueMs).toBeGreaterThanOrEqual(0);
    expect(r.inferenceMs).toBeGreaterThan(0);
    expect(sizes.reduce((s, x) => s + x, 0)).toBe(2);
  });
});

describe('Batcher.assertRoom', () => {
  it('refuses before any work when the queue cannot take the items, with the same error as submit', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const log: Seq[][] = [];
    const work = paddedWork(log);
    const b = make(log, { capacity: 2, maxBatchItems: 1, process: async (x) => (await gate, work(x)) });
    const running = b.submit([seq(1)]);
    await new Promise((r) => setImmediate(r));
    const queued = b.submit([seq(2), seq(3)]);
    expect(() => b.assertRoom(1)).toThrow(expect.objectContaining({ kind: 'overloaded', details: { retryAfterSeconds: expect.any(Number) } }));
    release();
    await Promise.all([running, queued]);
    expect(() => b.assertRoom(2)).not.toThrow();
    const drained = b.drain();
    expect(() => b.assertRoom(1)).toThrow(expect.objectContaining({ kind: 'unavailable' }));
    await drained;
  });

  describe('fairness between requests (issue #10 item 1)', () => {
    /** A batcher whose engine is held by a first batch until release(), so what queues meanwhile is grouped at once. */
    function held(over: Partial<BatcherOptions<Seq, number>> = {}) {
      const log: Seq[][] = [];
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const work = paddedWork(log);
      const b = make(log, { process: async (x) => (await gate, work(x)), ...over });
      return { b, log, release, lengths: () => log.map((batch) => batch.map((x) => x.length)) };
    }

    it('serves a short request queued behind a long request in the next batch, not after all its windows', async () => {
      const { b, log, release, lengths } = held({ maxBatchItems: 2, maxBatchTokens: 64, requestSliceTokens: 32 });
      const busy = b.submit([seq(1)]);
      const long = b.submit(Array.from({ length: 6 }, (_, i) => seq(32, i))); // six 32-token windows
      const short = b.submit([seq(30)]);
      release();
      const [, l, s] = await Promise.all([busy, long, short]);
      expect(l.outputs).toEqual(Array.from({ length: 6 }, (_, i) => weightedSum(seq(32, i))));
      expect(s.outputs).toEqual([weightedSum(seq(30))]);
      // the long request first (it came first), one slice of it; then the short one's turn
      expect(lengths().slice(0, 3)).toEqual([[1], [30, 32], [32]]);
      expect(log.flat().length).toBe(8);
    });

    it('puts at most one slice of a request into a batch, but at least one item', async () => {
      const { b, release, lengths } = held({ maxBatchItems: 8, maxBatchTokens: 1000, requestSliceTokens: 25 });
      const busy = b.submit([seq(1)]);
      const many = b.submit([seq(10), seq(10), seq(10), seq(10), seq(40)]);
      release();
      await Promise.all([busy, many]);
      expect(lengths()).toEqual([[1], [10, 10], [10, 10], [40]]);
    });

    it('takes turns between two long requests instead of finishing the first one first', async () => {
      const { b, log, release } = held({ maxBatchItems: 1, maxBatchTokens: 64 });
      const busy = b.submit([seq(1)]);
      const a = b.submit([seq(20, 100), seq(20, 101), seq(20, 102)]);
      const c = b.submit([seq(20, 200), seq(20, 201), seq(20, 202)]);
      release();
      await Promise.all([busy, a, c]);
      expect(log.slice(1).map((batch) => batch[0][0])).toEqual([100, 200, 101, 201, 102, 202]);
    });

    it('never pads a short text to the length of a long window', async () => {
      const { b, release, lengths } = held({ maxBatchItems: 8, maxBatchTokens: 10_000 });
      const busy = b.submit([seq(1)]);
      const texts = [b.submit([seq(5)]), b.submit([seq(512)]), b.submit([seq(8)]), b.submit([seq(500)])];
      release();
      await Promise.all([busy, ...texts]);
      expect(lengths()).toEqual([[1], [5, 8], [500, 512]]);
    });
  });
});
