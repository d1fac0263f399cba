/**
 * The embedded PGlite lives on a worker thread (src/db/pglite-worker.ts), so that creating it, migrating it and
 * its queries never hold the event loop (how long the loop stalls is measured by `bench stall`, not here). These
 * tests check what the main thread sees: drizzle works through the worker client (rows, types, transactions),
 * the data directory is created atomically off the main thread, and a worker that dies fails calls with a
 * transient error instead of hanging them or taking the process down.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, executeRows, type DbHandle } from '../src/db/client.js';
import { isTransientDbError } from '../src/db/db-error.js';
import { PgliteWorkerClient } from '../src/db/pglite-worker.js';
import { createRepository } from '../src/db/repository.js';
import { predictions } from '../src/db/schema.js';
import { isToxScopeError } from '../src/errors.js';
import { predictionRow } from './helpers/db.js';

const clientOf = (h: DbHandle) => (h.db as unknown as { $client: unknown }).$client;

describe('embedded PGlite on a worker thread', () => {
  let h: DbHandle;
  beforeAll(async () => {
    h = await createDb({ dataDir: 'memory://' });
  }, 180_000);
  afterAll(() => h?.close());

  it('is a client of a worker thread, not a PGlite in this thread', () => {
    expect(clientOf(h)).toBeInstanceOf(PgliteWorkerClient);
  });

  it('answers drizzle queries with the same types as PGlite itself (dates, booleans, reals, nulls)', async () => {
    const row = predictionRow({ createdAt: new Date('2026-12-02T08:00:00.123Z'), score: 0.75, label: true });
    await createRepository(h.db).insertPredictions([row]);
    const [back] = await h.db.select().from(predictions).where(eq(predictions.id, row.id));
    expect(back).toEqual({ ...row, text: null, attributes: null });
    expect(back.createdAt).toBeInstanceOf(Date);
    const [n] = await executeRows<{ n: number; big: string; at: string }>(h.db, sql`select count(*)::int as n, 9007199254740993::bigint as big, ${row.createdAt}::timestamptz as at from predictions`);
    expect(n.n).toBeGreaterThanOrEqual(1);
    expect(BigInt(n.big)).toBe(9007199254740993n);
  });

  it('commits a transaction that resolves and rolls back one that throws, savepoints included', async () => {
    const kept = predictionRow();
    const dropped = predictionRow();
    const inner = predictionRow();
    await h.db.transaction(async (tx) => {
      await tx.insert(predictions).values(kept);
      await tx
        .transaction(async (sp) => {
          await sp.insert(predictions).values(inner);
          throw new Error('undo the savepoint only');
        })
        .catch(() => undefined);
    });
    await expect(
      h.db.transaction(async (tx) => {
        await tx.insert(predictions).values(dropped);
        throw new Error('undo all of it');
      }),
    ).rejects.toThrow('undo all of it');
    const ids = (await h.db.select({ id: predictions.id }).from(predictions)).map((r) => r.id);
    expect(ids).toContain(kept.id);
    expect(ids).not.toContain(dropped.id);
    expect(ids).not.toContain(inner.id);
  });

  it('passes a database error through with its SQLSTATE, not a hang', async () => {
    const e = await executeRows(h.db, sql`select * from no_such_table`).catch((x: unknown) => x);
    const codes: unknown[] = [];
    for (let c: unknown = e; c; c = (c as { cause?: unknown }).cause) codes.push((c as { code?: unknown }).code);
    expect(codes).toContain('42P01');
  });
});

describe('a dead embedded-database worker', () => {
  it('fails the calls in flight and every later one with a transient error; the process goes on', { timeout: 180_000 }, async () => {
    const h = await createDb({ dataDir: 'memory://' });
    const repo = createRepository(h.db);
    await repo.ping();
    const worker = (clientOf(h) as unknown as { worker: Worker }).worker;
    const inFlight = repo.insertPredictions(Array.from({ length: 200 }, () => predictionRow())).catch((x: unknown) => x);
    await worker.terminate();
    const [during, after] = [await inFlight, await repo.ping().catch((x: unknown) => x)];
    for (const e of [during, after]) {
      // either the insert finished before the worker died, or it failed like every later call
      if (typeof e === 'number') continue;
      expect(isToxScopeError(e) && e.kind).toBe('unavailable');
      expect(isTransientDbError(e)).toBe(true);
      expect((e as Error).message).toMatch(/embedded database's worker exited/);
    }
    expect(typeof after).not.toBe('undefined'); // ping rejected
    expect((clientOf(h) as PgliteWorkerClient).failure()).toMatch(/worker exited/);
    await h.close(); // closing a dead one does not hang
  });
});

describe('creating the embedded database on disk', () => {
  it('creates it in the worker, in <dir>/pglite, and opens it again with its rows', { timeout: 240_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'toxscope-pglite-worker-'));
    try {
      const first = await createDb({ dataDir });
      const row = predictionRow();
      await createRepository(first.db).insertPredictions([row]);
      await first.close();
      const second = await createDb({ dataDir });
      const ids = (await second.db.select({ id: predictions.id }).from(predictions)).map((r) => r.id);
      await second.close();
      expect(ids).toEqual([row.id]);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
