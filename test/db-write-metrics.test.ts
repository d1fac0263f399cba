/**
 * The write queue's numbers on the service's one Prometheus registry: what waits where (memory, journal only),
 * what was spilled, replayed, written, dropped and refused, the journal's size and whether the database is up.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRepository, type Repository } from '../src/db/repository.js';
import { WriteQueue } from '../src/db/write-queue.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { openTestDb, predictionRow, type TestDb } from './helpers/db.js';

const value = (text: string, series: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  if (line === undefined) throw new Error(`no series ${series} in\n${text}`);
  return Number(line.slice(series.length + 1));
};

describe('write queue metrics', () => {
  let t: TestDb;
  let repo: Repository;
  let dir: string;
  beforeAll(async () => {
    t = await openTestDb('pglite');
    repo = createRepository(t.handle.db);
    dir = mkdtempSync(join(tmpdir(), 'toxscope-wqm-'));
  });
  afterAll(async () => {
    await t?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports queued, spilled, replayed, written, dropped and refused entries, journal bytes and database_up', async () => {
    let down = true;
    const refuse = () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }));
    const switchable: Repository = {
      ...repo,
      insertPredictions: (rows) => (down ? refuse() : repo.insertPredictions(rows)),
      recordFeedback: (items) => (down ? refuse() : repo.recordFeedback(items)),
    };
    const q = new WriteQueue({ repo: switchable, journalDir: join(dir, 'journal'), maxQueued: 4, batchSize: 3, flushDelayMs: 60_000, retryMinMs: 60_000, maxJournalBytes: 50_000 });
    const m = createMetrics({ processDefaults: false });
    const before = await m.render();
    expect(value(before, 'toxscope_write_journal_bytes')).toBe(0); // registered before any queue is observed
    m.observeWrites(() => q.stats());

    for (let i = 0; i < 10; i++) q.enqueuePredictions([predictionRow()]);
    await q.flush().catch(() => undefined); // the database is away
    let text = await m.render();
    expect(value(text, 'toxscope_write_queue_entries{where="memory"}')).toBe(4);
    expect(value(text, 'toxscope_write_queue_entries{where="journal"}')).toBe(6);
    expect(value(text, 'toxscope_write_queue_spilled_total')).toBe(6);
    expect(value(text, 'toxscope_write_journal_bytes')).toBeGreaterThan(10 * 200);
    expect(value(text, 'toxscope_database_up')).toBe(0);

    // a full journal refuses (the caller is told), and says so
    let refused = 0;
    for (let i = 0; i < 400 && refused === 0; i++) {
      try {
        q.enqueuePredictions([predictionRow()]);
      } catch {
        refused += 1;
      }
    }
    expect(refused).toBe(1);
    const accepted = q.stats().queued + q.stats().spilled;

    down = false;
    await q.flush();
    q.enqueuePredictions([predictionRow({ languageSource: 'guessed' as 'hint' })]); // rejected by a CHECK constraint: dropped
    await q.flush();
    text = await m.render();
    expect(value(text, 'toxscope_write_queue_entries{where="memory"}')).toBe(0);
    expect(value(text, 'toxscope_write_queue_entries{where="journal"}')).toBe(0);
    expect(value(text, 'toxscope_write_queue_replayed_total')).toBe(accepted - 4);
    expect(value(text, 'toxscope_write_queue_written_total')).toBe(accepted);
    expect(value(text, 'toxscope_write_queue_dropped_total')).toBe(1);
    expect(value(text, 'toxscope_write_queue_refused_total')).toBe(1);
    expect(value(text, 'toxscope_write_journal_bytes')).toBe(0);
    expect(value(text, 'toxscope_database_up')).toBe(1);
    await q.close();
  });
});
