/**
 * Starting without the database: the connector opens and migrates in the background with backoff, its
 * repository answers 'unavailable' (transient) until then, and the write queue's rows reach the database once
 * it is up, each exactly once.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { describe, expect, it, vi } from 'vitest';
import { createDb, executeRows } from '../src/db/client.js';
import { DatabaseConnector } from '../src/db/connector.js';
import { isTransientDbError } from '../src/db/db-error.js';
import { WriteQueue } from '../src/db/write-queue.js';
import { isToxScopeError } from '../src/errors.js';
import type { Worker } from 'node:worker_threads';
import { createRepository } from '../src/db/repository.js';
import { DATABASE_URL, freshPostgresDatabase, predictionRow, tcpProxy } from './helpers/db.js';

describe('database connector', () => {
  it('retries until the database opens, answers unavailable before, and the queued rows land once after', { timeout: 180_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'toxscope-connector-'));
    let failuresLeft = 3;
    const errors: { message: string; attempt: number }[] = [];
    let upCalls = 0;
    let queue: WriteQueue | undefined;
    const connector = new DatabaseConnector({
      open: async () => {
        if (failuresLeft-- > 0) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
        return createDb({ dataDir: 'memory://' });
      },
      retryMinMs: 10,
      retryMaxMs: 40,
      onError: (e, info) => errors.push({ message: e.message, attempt: info.attempt }),
      onUp: () => {
        upCalls += 1;
        queue?.wake();
      },
    });
    queue = new WriteQueue({ repo: connector.repository, journalDir: join(dir, 'journal'), flushDelayMs: 1, retryMinMs: 60_000, retryMaxMs: 60_000 });
    try {
      await connector.start();
      expect(connector.state).toBe('connecting');
      const e = await connector.repository.thresholdOverrides('v1').catch((x: unknown) => x);
      expect(isToxScopeError(e) && e.kind).toBe('unavailable');
      expect(isTransientDbError(e)).toBe(true);
      expect((e as Error).message).toMatch(/ECONNREFUSED/);

      const rows = Array.from({ length: 20 }, () => predictionRow());
      queue.enqueuePredictions(rows);
      await queue.recordFeedback([{ predictionId: rows[0].id, label: true, source: 'mod' }]);
      // the first write fails (the retry backoff is a minute): only the connector's onUp can make it land soon
      await vi.waitFor(() => expect(queue!.stats().databaseUp).toBe(false), { timeout: 5_000, interval: 5 });

      expect(await connector.whenUp(90_000)).toBe(true);
      expect(connector.state).toBe('up');
      expect(upCalls).toBe(1);
      expect(errors.map((x) => x.attempt)).toEqual([1, 2, 3]);
      await vi.waitFor(() => expect(queue!.stats()).toMatchObject({ queued: 0, spilled: 0, written: 21, databaseUp: true }), { timeout: 10_000, interval: 10 });
      const [n] = await executeRows<{ p: number; f: number }>(
        connector.handle!.db,
        sql`select (select count(*)::int from predictions) as p, (select count(*)::int from feedback) as f`,
      );
      expect(n).toEqual({ p: 20, f: 1 });
    } finally {
      await queue.close({ timeoutMs: 1_000 });
      await connector.close();
      rmSync(dir, { recursive: true, force: true });
    }
    expect(connector.state).toBe('closed');
    expect(await connector.whenUp(10)).toBe(false);
  });

  it('an embedded database whose creation was killed half-way is created again at the next start', { timeout: 120_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'toxscope-pglite-init-'));
    try {
      // what kill -9 during a first start leaves: a partial database in the staging directory, an empty target
      mkdirSync(join(dataDir, 'pglite.init', 'base'), { recursive: true });
      writeFileSync(join(dataDir, 'pglite.init', 'base', 'partial'), 'half-written');
      mkdirSync(join(dataDir, 'pglite'));
      const db = await createDb({ dataDir });
      try {
        const [row] = await executeRows<{ n: number }>(db.db, sql`select count(*)::int as n from predictions`);
        expect(row.n).toBe(0);
      } finally {
        await db.close();
      }
      expect(existsSync(join(dataDir, 'pglite', 'PG_VERSION'))).toBe(true);
      expect(existsSync(join(dataDir, 'pglite.init'))).toBe(false);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('notices by its ping that an idle embedded database died, and opens it again with its rows', { timeout: 240_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'toxscope-connector-ping-'));
    const seen: boolean[] = [];
    let upCalls = 0;
    const connector = new DatabaseConnector({
      open: () => createDb({ dataDir }),
      retryMinMs: 10,
      retryMaxMs: 100,
      pingMs: 50,
      onReachability: (ok) => seen.push(ok),
      onUp: () => (upCalls += 1),
    });
    try {
      await connector.start();
      expect(connector.state).toBe('up');
      expect(connector.reachable).toBe(true);
      const row = predictionRow();
      await connector.repository.insertPredictions([row]);
      // nothing is written from here on: only the ping can notice
      const worker = (connector.handle!.db as unknown as { $client: { worker: Worker } }).$client.worker;
      await worker.terminate();
      await vi.waitFor(() => expect(seen).toContain(false), { timeout: 30_000, interval: 20 });
      await vi.waitFor(() => expect(upCalls).toBe(2), { timeout: 180_000, interval: 50 });
      expect(connector.state).toBe('up');
      expect(connector.reachable).toBe(true);
      const [n] = await executeRows<{ n: number }>(connector.handle!.db, sql`select count(*)::int as n from predictions where id = ${row.id}`);
      expect(n.n).toBe(1);
    } finally {
      await connector.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it.skipIf(!DATABASE_URL)('notices by its ping that an idle Postgres went away, and that it came back (DATABASE_URL)', { timeout: 120_000 }, async () => {
    const fresh = await freshPostgresDatabase();
    const target = new URL(fresh.url);
    const proxy = await tcpProxy(target.hostname, Number(target.port || 5432));
    const proxied = new URL(fresh.url);
    proxied.port = String(proxy.port);
    const seen: { ok: boolean; code?: string }[] = [];
    const connector = new DatabaseConnector({
      open: () => createDb({ url: proxied.toString(), connectTimeoutSeconds: 2 }),
      pingMs: 50,
      pingTimeoutMs: 1_000,
      onReachability: (ok, e) => seen.push({ ok, ...(e?.code && { code: e.code }) }),
    });
    try {
      await connector.start();
      expect(connector.reachable).toBe(true);
      await proxy.cut();
      await vi.waitFor(() => expect(connector.reachable).toBe(false), { timeout: 30_000, interval: 20 });
      expect(seen[0].ok).toBe(false);
      expect(connector.state).toBe('up'); // a network outage is not a broken handle: the pool reconnects
      await proxy.restore();
      await vi.waitFor(() => expect(connector.reachable).toBe(true), { timeout: 30_000, interval: 20 });
      expect(seen.map((s) => s.ok)).toEqual([false, true]);
      await createRepository(connector.handle!.db).ping();
    } finally {
      await connector.close();
      await proxy.close();
      await fresh.drop();
    }
  });
});
