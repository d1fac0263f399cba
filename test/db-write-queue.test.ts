import { appendFileSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { executeRows } from '../src/db/client.js';
import { createRepository, type Repository } from '../src/db/repository.js';
import type { NewPrediction } from '../src/db/schema.js';
import { isTransientDbError, WriteQueue } from '../src/db/write-queue.js';
import { isToxScopeError } from '../src/errors.js';
import { openTestDb, predictionRow, type TestDb } from './helpers/db.js';

/** The real repository behind a switch: while `down`, every call fails like an unreachable server. */
function switchable(repo: Repository) {
  const state = {
    down: false,
    /** Prediction ids in the order the database accepted them (successful calls only). */
    written: [] as string[],
    calls: 0,
  };
  const refuse = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  const wrapped: Repository = {
    ...repo,
    async insertPredictions(rows) {
      state.calls += 1;
      if (state.down) throw refuse();
      const n = await repo.insertPredictions(rows);
      state.written.push(...rows.map((r) => r.id));
      return n;
    },
    async recordFeedback(items) {
      state.calls += 1;
      if (state.down) throw refuse();
      return repo.recordFeedback(items);
    },
  };
  return { state, repo: wrapped };
}

/** The journal's entries, segment by segment, as written. */
function journalLines(dir: string): any[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .sort()
    .flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l)));
}
const lastSegment = (dir: string) => join(dir, readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort().at(-1)!);

describe('write queue (PGlite)', () => {
  let t: TestDb;
  let repo: Repository;
  let dir: string;
  beforeAll(async () => {
    t = await openTestDb('pglite');
    repo = createRepository(t.handle.db);
  });
  afterAll(() => t?.dispose());
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'toxscope-wq-'));
    return () => rmSync(dir, { recursive: true, force: true });
  });

  const countRows = async (ids: string[]) =>
    (await executeRows<{ id: string; n: number }>(
      t.handle.db,
      sql`select id, count(*)::int as n from predictions where id in ${ids} group by id`,
    )).reduce((acc, r) => acc + r.n, 0);
  const feedbackLabel = async (id: string) =>
    (await executeRows<{ label: boolean }>(t.handle.db, sql`select label from feedback where prediction_id = ${id}`))[0]?.label;

  it('writes batches in the background and reports feedback for still-queued predictions as stored, not unknown', async () => {
    const { state, repo: r } = switchable(repo);
    const q = new WriteQueue({ repo: r, journalDir: join(dir, 'journal'), flushDelayMs: 60_000 });
    const rows = [predictionRow({ label: true }), predictionRow()];
    q.enqueuePredictions(rows);
    expect(q.isPending(rows[0].id)).toBe(true);
    expect(state.calls).toBe(0); // nothing written on the request path
    expect(await q.recordFeedback([{ predictionId: rows[0].id, label: true, source: 'mod' }])).toEqual([
      { predictionId: rows[0].id, attribute: 'toxicity', status: 'stored' },
    ]);
    const at = new Date();
    expect(
      await q.recordFeedback([
        { predictionId: rows[1].id, label: false, source: 'mod', at },
        { predictionId: rows[1].id, label: true, source: 'mod', at },
      ]),
    ).toEqual([
      { predictionId: rows[1].id, attribute: 'toxicity', status: 'stored' },
      { predictionId: rows[1].id, attribute: 'toxicity', status: 'updated' },
    ]);
    await q.flush();
    expect(state.written).toEqual(rows.map((x) => x.id));
    expect(await feedbackLabel(rows[0].id)).toBe(true);
    expect(await feedbackLabel(rows[1].id)).toBe(true); // the later item of the call
    // Now the prediction is in the database: feedback goes straight there and says what happened.
    expect(
      await q.recordFeedback([
        { predictionId: rows[0].id, label: false, source: 'mod' },
        { predictionId: 'never-classified', label: true, source: 'mod' },
      ]),
    ).toEqual([
      { predictionId: rows[0].id, attribute: 'toxicity', status: 'updated' },
      { predictionId: 'never-classified', attribute: 'toxicity', status: 'unknown_id' },
    ]);
    expect(q.stats()).toMatchObject({ queued: 0, spilled: 0, written: 5, dropped: 0, databaseUp: true });
    await q.close();
  });

  it('spills past the memory bound while the database is away, then replays everything in order, once', async () => {
    const { state, repo: r } = switchable(repo);
    const journalDir = join(dir, 'journal');
    const errors: unknown[] = [];
    const q = new WriteQueue({ repo: r, journalDir, maxQueued: 10, batchSize: 4, flushDelayMs: 60_000, retryMinMs: 60_000, onError: (e) => errors.push(e) });
    state.down = true;
    const rows: NewPrediction[] = [];
    for (let i = 0; i < 30; i++) {
      const batch = [predictionRow({ label: i % 2 === 0 })];
      rows.push(...batch);
      q.enqueuePredictions(batch);
    }
    await expect(q.flush()).rejects.toSatisfy((e) => isToxScopeError(e) && e.kind === 'unavailable');
    // 10 in memory (4 of them in the failed head batch), 20 in the journal only; all 30 journaled, in order.
    expect(q.stats()).toMatchObject({ queued: 10, spilled: 20, spilledTotal: 20, databaseUp: false });
    const lines = journalLines(journalDir);
    expect(lines.map((l) => l.row.id)).toEqual(rows.map((x) => x.id));
    expect(lines.map((l) => l.seq)).toEqual(Array.from({ length: 30 }, (_, i) => 1 + i));
    expect(q.stats().journalBytes).toBeGreaterThan(0);

    // Feedback while away: accepted for queued predictions (memory or journal), refused for ones it cannot check.
    expect(await q.recordFeedback([{ predictionId: rows[3].id, label: true, source: 'mod' }, { predictionId: rows[25].id, label: false, source: 'mod' }])).toEqual([
      { predictionId: rows[3].id, attribute: 'toxicity', status: 'stored' },
      { predictionId: rows[25].id, attribute: 'toxicity', status: 'stored' },
    ]);
    expect(await q.recordFeedback([{ predictionId: rows[25].id, label: true, source: 'mod' }])).toEqual([
      { predictionId: rows[25].id, attribute: 'toxicity', status: 'updated' },
    ]);
    await expect(q.recordFeedback([{ predictionId: 'written-long-ago', label: true, source: 'mod' }])).rejects.toSatisfy(
      (e) => isToxScopeError(e) && e.kind === 'unavailable',
    );

    state.down = false;
    await q.flush();
    expect(state.written).toEqual(rows.map((x) => x.id)); // in order, each exactly once
    expect(await countRows(rows.map((x) => x.id))).toBe(30);
    expect(await feedbackLabel(rows[3].id)).toBe(true);
    expect(await feedbackLabel(rows[25].id)).toBe(true); // the later of the two queued labels
    expect(journalLines(journalDir)).toEqual([]); // released once everything is committed
    expect(q.stats()).toMatchObject({ queued: 0, spilled: 0, replayed: 23, written: 33, dropped: 0, journalBytes: 0, databaseUp: true });
    expect(errors).toEqual([]); // the background writer never ran: flush() reported the failures itself
    await q.close();
  });

  it('an accepted row is on disk when enqueue returns: a crash (no flush, no close) loses nothing, the next start replays it', async () => {
    const { state, repo: r } = switchable(repo);
    const journalDir = join(dir, 'journal');
    // memory far from full and no write due for a minute: before the journal, these rows lived only in memory
    const crashed = new WriteQueue({ repo: r, journalDir, maxQueued: 10_000, flushDelayMs: 60_000, retryMinMs: 60_000 });
    const rows = Array.from({ length: 12 }, () => predictionRow());
    for (const row of rows) crashed.enqueuePredictions([row]);
    expect(await crashed.recordFeedback([{ predictionId: rows[1].id, label: true, source: 'mod' }])).toEqual([{ predictionId: rows[1].id, attribute: 'toxicity', status: 'stored' }]);
    expect(crashed.stats()).toMatchObject({ queued: 13, spilled: 0 });
    expect(state.calls).toBe(0);
    // `crashed` is abandoned as a killed process would leave it; a torn last line (killed mid-append, never
    // acknowledged) is cut off on recovery.
    appendFileSync(lastSegment(journalDir), '{"seq":999,"kind":"predic');

    const second = new WriteQueue({ repo: r, journalDir, flushDelayMs: 60_000 });
    expect(second.stats()).toMatchObject({ recovered: 13, spilled: 13, queued: 0 });
    expect(second.isPending(rows[11].id)).toBe(true);
    await second.flush();
    expect(state.written).toEqual(rows.map((x) => x.id));
    expect(await countRows(rows.map((x) => x.id))).toBe(12);
    expect(await feedbackLabel(rows[1].id)).toBe(true);
    expect(journalLines(journalDir)).toEqual([]);
    expect(second.stats()).toMatchObject({ written: 13, replayed: 13, dropped: 0 });
    await second.close();
  });

  it("journals every scored attribute and each label's attribute; lines written before attributes existed still replay as toxicity", async () => {
    const { repo: r } = switchable(repo);
    const journalDir = join(dir, 'journal');
    const crashed = new WriteQueue({ repo: r, journalDir, flushDelayMs: 60_000, retryMinMs: 60_000 });
    const withAttributes = predictionRow({ attributes: { insult: { score: 0.8, threshold: 0.4, label: true } } });
    crashed.enqueuePredictions([withAttributes]);
    expect(await crashed.recordFeedback([{ predictionId: withAttributes.id, attribute: 'insult', label: false, source: 'mod' }, { predictionId: withAttributes.id, label: true, source: 'mod' }])).toEqual([
      { predictionId: withAttributes.id, attribute: 'insult', status: 'stored' },
      { predictionId: withAttributes.id, attribute: 'toxicity', status: 'stored' }, // another attribute: not an update of the first
    ]);
    const lines = journalLines(journalDir);
    expect(lines[0].row.attributes).toEqual({ insult: { score: 0.8, threshold: 0.4, label: true } });
    expect(lines[1].item).toMatchObject({ attribute: 'insult', label: false });
    // a line of the previous version: no attributes on the row, no attribute on the label
    const old = predictionRow();
    const { attributes: _none, ...oldRow } = old;
    appendFileSync(lastSegment(journalDir), JSON.stringify({ seq: 100, kind: 'prediction', row: oldRow }) + '\n' + JSON.stringify({ seq: 101, kind: 'feedback', item: { predictionId: old.id, label: true, source: 'mod', at: new Date().toISOString() } }) + '\n');

    const second = new WriteQueue({ repo: r, journalDir, flushDelayMs: 60_000 });
    expect(second.stats()).toMatchObject({ recovered: 5 });
    await second.flush();
    const stored = await executeRows<{ id: string; attributes: unknown }>(t.handle.db, sql`select id, attributes from predictions where id in (${withAttributes.id}, ${old.id}) order by id`);
    expect(stored).toEqual([
      { id: withAttributes.id, attributes: { insult: { score: 0.8, threshold: 0.4, label: true } } },
      { id: old.id, attributes: null },
    ]);
    const labels = await executeRows<{ prediction_id: string; attribute: string; label: boolean }>(t.handle.db, sql`select prediction_id, attribute, label from feedback where prediction_id in (${withAttributes.id}, ${old.id}) order by prediction_id, attribute`);
    expect(labels).toEqual([
      { prediction_id: withAttributes.id, attribute: 'insult', label: false },
      { prediction_id: withAttributes.id, attribute: 'toxicity', label: true },
      { prediction_id: old.id, attribute: 'toxicity', label: true },
    ]);
    expect(second.stats()).toMatchObject({ dropped: 0 });
    await second.close();
  });

  it('replays exactly once after a crash between the database commit and the journal release', async () => {
    const { state, repo: r } = switchable(repo);
    const journalDir = join(dir, 'journal');
    const q = new WriteQueue({ repo: r, journalDir, flushDelayMs: 60_000 });
    const rows = Array.from({ length: 5 }, () => predictionRow());
    q.enqueuePredictions(rows);
    await q.recordFeedback([{ predictionId: rows[0].id, label: true, source: 'mod' }]);
    const snapshot = join(dir, 'snapshot');
    cpSync(journalDir, snapshot, { recursive: true }); // the journal as it was just before the commit
    await q.flush();
    expect(journalLines(journalDir)).toEqual([]);
    await q.close();
    // The process "died" after the commit but before releasing: the next start finds every row again.
    rmSync(journalDir, { recursive: true, force: true });
    cpSync(snapshot, journalDir, { recursive: true });
    const again = new WriteQueue({ repo: r, journalDir, flushDelayMs: 60_000 });
    expect(again.stats()).toMatchObject({ recovered: 6 });
    await again.flush();
    expect(state.written).toEqual([...rows, ...rows].map((x) => x.id)); // written twice ...
    expect(await countRows(rows.map((x) => x.id))).toBe(5); // ... stored once
    const [fb] = await executeRows<{ n: number }>(t.handle.db, sql`select count(*)::int as n from feedback where prediction_id = ${rows[0].id}`);
    expect(fb.n).toBe(1);
    await again.close();
  });

  it('a shutdown with the database away keeps everything in the journal, in order, for the next start', async () => {
    const { state, repo: r } = switchable(repo);
    const journalDir = join(dir, 'journal');
    const first = new WriteQueue({ repo: r, journalDir, maxQueued: 5, batchSize: 3, flushDelayMs: 60_000, retryMinMs: 60_000 });
    state.down = true;
    const rows = Array.from({ length: 12 }, () => predictionRow());
    for (const row of rows) first.enqueuePredictions([row]);
    await first.close({ timeoutMs: 1_000 });
    await expect(Promise.resolve().then(() => first.enqueuePredictions([predictionRow()]))).rejects.toThrow(/closed/);
    expect(journalLines(journalDir).map((l) => l.row.id)).toEqual(rows.map((x) => x.id));
    state.down = false;
    const second = new WriteQueue({ repo: r, journalDir, flushDelayMs: 60_000 });
    await second.flush();
    expect(state.written).toEqual(rows.map((x) => x.id));
    await second.close();
  });

  it('under steady load (never idle) committed rows are released segment by segment: a small journal limit is never reached', async () => {
    const journalDir = join(dir, 'journal');
    let q: WriteQueue | undefined;
    const total = 2_000; // about 730 KB of journal lines, more than the limit below
    let enqueued = 0;
    const add = () => {
      q!.enqueuePredictions([predictionRow()]);
      enqueued += 1;
    };
    // every write finds a newer row already waiting: the queue is never idle, so its active segment is never truncated
    const busy: Repository = {
      ...repo,
      async insertPredictions(rows) {
        if (enqueued < total) add();
        return repo.insertPredictions(rows);
      },
    };
    q = new WriteQueue({ repo: busy, journalDir, maxJournalBytes: 1 << 19, batchSize: 50, flushDelayMs: 60_000 });
    let maxBytes = 0;
    add();
    while (enqueued < total || q.stats().queued > 0) {
      for (let i = 0; i < 40 && enqueued < total; i++) add();
      await q.flush();
      maxBytes = Math.max(maxBytes, q.stats().journalBytes);
    }
    expect(q.stats()).toMatchObject({ refused: 0, written: total, dropped: 0 });
    expect(maxBytes).toBeLessThan(1 << 18); // a few 64 KiB segments at most
    await q.close();
  });

  it('the background writer retries on its own with backoff and catches up when the database returns', async () => {
    const { state, repo: r } = switchable(repo);
    const retries: boolean[] = [];
    const q = new WriteQueue({ repo: r, journalDir: join(dir, 'journal'), flushDelayMs: 0, retryMinMs: 5, retryMaxMs: 20, onError: (_e, info) => retries.push(info.retrying) });
    state.down = true;
    const rows = Array.from({ length: 7 }, () => predictionRow());
    q.enqueuePredictions(rows);
    await vi.waitFor(() => expect(retries.length).toBeGreaterThanOrEqual(3), { timeout: 10_000, interval: 5 });
    expect(retries.every((x) => x)).toBe(true);
    expect(q.stats().databaseUp).toBe(false);
    state.down = false;
    await vi.waitFor(() => expect(q.stats().written).toBe(7), { timeout: 10_000, interval: 5 });
    expect(state.written).toEqual(rows.map((x) => x.id));
    expect(q.stats().databaseUp).toBe(true);
    await q.close();
  });

  it('a commit whose acknowledgement was lost is retried without writing anything twice', async () => {
    let loseAck = true;
    const flaky: Repository = {
      ...repo,
      async insertPredictions(rows) {
        const n = await repo.insertPredictions(rows);
        if (loseAck) {
          loseAck = false;
          throw Object.assign(new Error('write CONNECTION_CLOSED'), { code: 'CONNECTION_CLOSED' });
        }
        return n;
      },
    };
    const q = new WriteQueue({ repo: flaky, journalDir: join(dir, 'journal'), flushDelayMs: 60_000, retryMinMs: 60_000 });
    const rows = [predictionRow(), predictionRow()];
    q.enqueuePredictions(rows);
    await expect(q.flush()).rejects.toThrow(/CONNECTION_CLOSED/);
    expect(q.isPending(rows[0].id)).toBe(true);
    await q.flush();
    expect(await countRows(rows.map((x) => x.id))).toBe(2);
    expect(q.stats()).toMatchObject({ queued: 0, written: 2 });
    await q.close();
  });

  it('drops (and reports) a row the database rejects, without holding back the rest of its batch', async () => {
    const dropped: unknown[] = [];
    const q = new WriteQueue({ repo, journalDir: join(dir, 'journal'), flushDelayMs: 60_000, onError: (_e, info) => info.dropped && dropped.push(info.dropped) });
    const good = [predictionRow(), predictionRow()];
    const bad = predictionRow({ languageSource: 'guessed' as 'hint' }); // violates the CHECK constraint (SQLSTATE 23514)
    q.enqueuePredictions([good[0], bad, good[1]]);
    await q.flush();
    expect(await countRows([...good, bad].map((x) => x.id))).toBe(2);
    expect(dropped).toHaveLength(1);
    expect(q.stats()).toMatchObject({ written: 2, dropped: 1 });
    await q.close();
  });

  it('refuses malformed rows at enqueue, naming the field, instead of stalling the writer', () => {
    const q = new WriteQueue({ repo, journalDir: join(dir, 'journal') });
    expect(() => q.enqueuePredictions([predictionRow({ createdAt: new Date('nope') })])).toThrow(/createdAt must be a valid Date/);
    expect(() => q.enqueuePredictions([predictionRow({ score: Number.NaN })])).toThrow(/score must be a finite number/);
    expect(q.stats().queued).toBe(0);
    return q.close();
  });

  it('classifies data errors as permanent and connection errors as transient', () => {
    expect(isTransientDbError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isTransientDbError(Object.assign(new Error('x'), { code: '57P01' }))).toBe(true); // admin shutdown
    expect(isTransientDbError(new Error('wrapped', { cause: Object.assign(new Error('x'), { code: '23505' }) }))).toBe(false);
    expect(isTransientDbError(Object.assign(new Error('x'), { code: '22001' }))).toBe(false);
  });
});
