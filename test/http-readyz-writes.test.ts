/**
 * Readiness and answers while the database is away: classification stays ready (degraded, saying why), and a
 * row that cannot be kept fails its request instead of being answered and lost.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Repository } from '../src/db/repository.js';
import { WriteQueue } from '../src/db/write-queue.js';
import type { WritesStatus } from '../src/service/deps.js';
import { buildTestApp, post, request, type TestApp } from './helpers/app.js';

const refuse = () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }));
const away = { insertPredictions: refuse, recordFeedback: refuse } as unknown as Repository;

describe('readiness and answers with the database away', () => {
  let t: TestApp;
  let dir: string;
  let queue: WriteQueue;
  let status: WritesStatus = { database: 'up', queued: 0, spilled: 0, journalBytes: 0, refusing: false };
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'toxscope-readyz-'));
    // a journal that holds about one request's rows: the second request finds it full
    queue = new WriteQueue({ repo: away, journalDir: join(dir, 'journal'), maxJournalBytes: 100, flushDelayMs: 60_000, retryMinMs: 60_000 });
    t = await buildTestApp({ deps: { predictions: queue, writes: () => status } });
  });
  afterAll(async () => {
    await t?.close();
    await queue?.close({ timeoutMs: 100 });
    rmSync(dir, { recursive: true, force: true });
  });

  it('stays ready while the database is away, flagged degraded with the reason and what waits in the journal', async () => {
    expect(await (await request(t.app, '/readyz')).json()).toMatchObject({ status: 'ready', degraded: false, database: 'up' });
    status = { database: 'unreachable', queued: 3, spilled: 7, journalBytes: 4096, refusing: false };
    const res = await request(t.app, '/readyz');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ready', degraded: true, database: 'unreachable', writes: { queued: 3, journal_only: 7, journal_bytes: 4096 } });
    status = { ...status, refusing: true };
    expect((await request(t.app, '/readyz')).status).toBe(503);
    status = { database: 'up', queued: 0, spilled: 0, journalBytes: 0, refusing: false };
  });

  it('answers 200 only for rows it kept: a full journal fails the request with 429 and a message', async () => {
    const first = await post(t.app, '/v1/classify', { texts: ['have a nice day'] });
    expect(first.status).toBe(200);
    const id = ((await first.json()) as { results: { id: string }[] }).results[0].id;
    expect(queue.isPending(id)).toBe(true);
    const second = await post(t.app, '/v1/classify', { texts: ['you are an idiot'] });
    expect(second.status).toBe(429);
    expect(((await second.json()) as { error: { message: string } }).error.message).toMatch(/write journal is full/);
    expect(queue.stats()).toMatchObject({ queued: 1, refused: 1 });
  });
});
