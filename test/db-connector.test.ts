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
import { predictionRow } from './helpers/db.js';

describe('database connector', () => {
  it('retries until the database opens, answers unavailable before, and the queued rows land once after', async () => {
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

      expect(await connector.whenUp(10_000)).toBe(true);
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
});
