/**
 * Database failures are logged and reported without the SQL parameters of the failed statement (user texts,
 * prediction ids, labels): drizzle's own error text carries the statement and every parameter.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeDbError, isTransientDbError } from '../src/db/db-error.js';
import { createRepository, type Repository } from '../src/db/repository.js';
import { WriteQueue } from '../src/db/write-queue.js';
import { openTestDb, predictionRow, type TestDb } from './helpers/db.js';

const SECRET = 'SECRET-user-text-4711';

/** Everything a logger could print about an error: message, stack and the messages of its causes. */
function printed(e: unknown): string {
  const parts: string[] = [];
  for (let x: unknown = e, depth = 0; x && depth < 6; x = (x as { cause?: unknown }).cause, depth++) {
    parts.push(String((x as Error).message), String((x as Error).stack));
  }
  return parts.join('\n');
}

describe('database errors without SQL parameters', () => {
  let t: TestDb;
  let repo: Repository;
  let dir: string;
  beforeAll(async () => {
    t = await openTestDb('pglite');
    repo = createRepository(t.handle.db);
    dir = mkdtempSync(join(tmpdir(), 'toxscope-dberr-'));
  });
  afterAll(async () => {
    await t?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a rejected insert says which constraint and SQLSTATE, not the row it carried', async () => {
    const bad = predictionRow({ languageSource: 'guessed' as 'hint', text: SECRET }); // CHECK violation, 23514
    const e = await repo.insertPredictions([bad]).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Error);
    expect(printed(e)).not.toContain(SECRET);
    expect(printed(e)).not.toContain(bad.id);
    expect((e as Error).message).toMatch(/predictions_language_source_check/);
    expect((e as { code?: string }).code).toBe('23514');
    expect(isTransientDbError(e)).toBe(false); // still recognised as a data error: the row is dropped, not retried
  });

  it("the write queue's failure reports (what the service logs) hold no parameters", async () => {
    const reports: string[] = [];
    const q = new WriteQueue({
      repo,
      journalDir: join(dir, 'journal'),
      flushDelayMs: 60_000,
      onError: (e) => reports.push(JSON.stringify(describeDbError(e)), printed(e)),
    });
    q.enqueuePredictions([predictionRow({ languageSource: 'guessed' as 'hint', text: SECRET })]);
    await q.flush();
    expect(q.stats().dropped).toBe(1);
    expect(reports.length).toBeGreaterThan(0);
    for (const r of reports) expect(r).not.toContain(SECRET);
    await q.close();
  });

  it('describes a raw drizzle error by its driver cause, and a data error without the quoted value', () => {
    const driver = Object.assign(new Error(`invalid input syntax for type uuid: "${SECRET}"`), { code: '22P02' });
    const drizzle = Object.assign(new Error(`Failed query: insert into "predictions" values ($1)\nparams: ${SECRET}`), { cause: driver });
    expect(describeDbError(drizzle)).toEqual({ code: '22P02', message: 'data exception (SQLSTATE 22P02)' });
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    expect(describeDbError(new Error(`Failed query: select 1\nparams: ${SECRET}`, { cause: refused }))).toEqual({ code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 127.0.0.1:5432' });
    expect(JSON.stringify(describeDbError(new Error(`Failed query: select $1\nparams: ${SECRET}`)))).not.toContain(SECRET);
  });
});
