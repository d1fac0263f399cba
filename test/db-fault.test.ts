/**
 * Fault test against the real Postgres server (runs only with DATABASE_URL): the database becomes unreachable
 * in the middle of a stream of predictions and feedback, the stream keeps going, the database comes back, and
 * every accepted row must be in it exactly once.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { describe, expect, it, vi } from 'vitest';
import { createDb, executeRows } from '../src/db/client.js';
import { createRepository } from '../src/db/repository.js';
import { WriteQueue } from '../src/db/write-queue.js';
import { isToxScopeError } from '../src/errors.js';
import { DATABASE_URL, freshPostgresDatabase, predictionRow, tcpProxy } from './helpers/db.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!DATABASE_URL)('fault: Postgres unreachable during a stream of writes (DATABASE_URL)', () => {
  it('keeps accepting, spills, and after the outage holds every accepted row exactly once', async () => {
    const fresh = await freshPostgresDatabase();
    const dir = mkdtempSync(join(tmpdir(), 'toxscope-fault-'));
    const direct = await createDb({ url: fresh.url }); // migrates; used to check the result
    const target = new URL(fresh.url);
    const proxy = await tcpProxy(target.hostname, Number(target.port || 5432));
    const proxied = new URL(fresh.url);
    proxied.port = String(proxy.port);
    const app = await createDb({ url: proxied.toString(), migrate: false, connectTimeoutSeconds: 2, maxConnections: 4 });
    const journalDir = join(dir, 'journal');
    const queue = new WriteQueue({
      repo: createRepository(app.db),
      journalDir,
      maxQueued: 40,
      batchSize: 16,
      flushDelayMs: 2,
      retryMinMs: 10,
      retryMaxMs: 100,
    });
    try {
      const accepted: string[] = [];
      const labels = new Map<string, boolean>(); // latest accepted label per prediction id
      const feedback = async (predictionId: string, label: boolean) => {
        const [r] = await queue.recordFeedback([{ predictionId, label, source: 'fault-test' }]);
        expect(r.status).not.toBe('unknown_id');
        labels.set(predictionId, label);
        return r;
      };

      // Written before the outage, for certain.
      const seed = Array.from({ length: 5 }, () => predictionRow({ createdAt: new Date() }));
      queue.enqueuePredictions(seed);
      accepted.push(...seed.map((r) => r.id));
      await queue.flush();

      let queuedDuringOutage = 0;
      const TOTAL = 600;
      for (let i = 0; i < TOTAL; i++) {
        if (i === 200) await proxy.cut();
        const down = i >= 200 && i < 450;
        if (i === 300) {
          // Feedback for an already written prediction cannot be checked while the database is away: refused.
          const e = await queue.recordFeedback([{ predictionId: seed[0].id, label: true, source: 'fault-test' }]).catch((x: unknown) => x);
          expect(isToxScopeError(e) && e.kind).toBe('unavailable');
          await vi.waitFor(() => expect(queue.stats().databaseUp).toBe(false), { timeout: 10_000, interval: 2 });
        }
        if (i === 450) await proxy.restore();

        const row = predictionRow({ createdAt: new Date(), label: i % 4 === 0, language: i % 2 ? 'en' : 'de' });
        queue.enqueuePredictions([row]); // classification never waits for the database
        accepted.push(row.id);
        if (i % 3 === 0 && i >= 5) {
          const id = accepted[accepted.length - 5];
          const pending = queue.isPending(id);
          try {
            await feedback(id, i % 2 === 0);
            if (down && pending) queuedDuringOutage += 1;
          } catch (e) {
            expect(isToxScopeError(e) && e.kind).toBe('unavailable'); // only when the id needed the database
            expect(pending).toBe(false);
          }
        }
        if (i % 10 === 0) await sleep(1); // let the background writer run
      }
      // Moderators change their minds after the outage: the later label must win.
      for (const id of [...labels.keys()].slice(0, 10)) await feedback(id, !labels.get(id));

      for (let attempt = 0; ; attempt++) {
        try {
          await queue.flush();
          break;
        } catch (e) {
          if (attempt > 200) throw e;
          await sleep(25);
        }
      }

      const stats = queue.stats();
      if (process.env.FAULT_DEBUG) console.log(JSON.stringify({ stats, queuedDuringOutage, feedback: labels.size }));
      expect(stats.spilledTotal).toBeGreaterThan(0); // the outage really pushed rows through the spill file
      expect(queuedDuringOutage).toBeGreaterThan(0);
      expect(stats).toMatchObject({ queued: 0, spilled: 0, dropped: 0, databaseUp: true });
      expect(readdirSync(journalDir).filter((f) => f.endsWith('.jsonl')).length).toBeLessThanOrEqual(1);
      expect(stats.journalBytes).toBe(0); // released once every row was committed

      const [counts] = await executeRows<{ n: number; distinct_ids: number }>(
        direct.db,
        sql`select count(*)::int as n, count(distinct id)::int as distinct_ids from predictions`,
      );
      expect(counts).toEqual({ n: accepted.length, distinct_ids: accepted.length });
      const ids = await executeRows<{ id: string }>(direct.db, sql`select id from predictions`);
      expect(new Set(ids.map((r) => r.id))).toEqual(new Set(accepted));

      const fb = await executeRows<{ prediction_id: string; label: boolean }>(direct.db, sql`select prediction_id, label from feedback`);
      expect(fb).toHaveLength(labels.size);
      expect(new Map(fb.map((r) => [r.prediction_id, r.label]))).toEqual(labels);
    } finally {
      await queue.close({ timeoutMs: 1_000 });
      await app.close();
      await direct.close();
      await proxy.close();
      await fresh.drop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
