/**
 * No answered row is lost, and none is stored twice: real `toxscope serve` processes are killed with SIGKILL
 * while the rows they answered are not yet in the database (the embedded PGlite with writes not yet flushed;
 * Postgres behind a TCP proxy that the test cuts), restarted, and once the database is back every answered
 * prediction id and every accepted feedback label is found exactly once. The restart itself happens with
 * Postgres still unreachable: the service must start, classify and journal without it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, executeRows, type DbHandle } from '../src/db/client.js';
import { DATABASE_URL, freshPostgresDatabase, tcpProxy } from './helpers/db.js';
import { trainServeBundle } from './helpers/serve-bundle.js';
import { spawnService, type ServiceProcess } from './helpers/service-process.js';

const root = mkdtempSync(join(tmpdir(), 'toxscope-crash-'));
const bundleDir = join(root, 'bundle');
const TEST_TIMEOUT = 480_000; // bounded: each start <= 150 s, each wait <= 120 s; about 40-110 s on 2 busy cores

beforeAll(async () => {
  await trainServeBundle(bundleDir, 'crash-test', join(root, 'cache'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const postJson = (url: string, body: unknown) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the clients were told: prediction ids answered with a 200, feedback answered as stored or updated. */
class Ledger {
  readonly predictions: string[] = [];
  readonly labels = new Map<string, boolean>();
  refusedFeedback = 0;

  /** `requests` classify calls of 3 texts each; after each, a label for a prediction answered 2 calls before. */
  async run(svc: ServiceProcess, requests: number, tag: string): Promise<void> {
    for (let i = 0; i < requests; i++) {
      const texts = [`${tag} ${i}: you are an idiot`, `${tag} ${i}: Guten Morgen zusammen`, `${tag} ${i}: have a nice day`];
      const res = await postJson(`${svc.url}/v1/classify`, { texts });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { results: { id: string }[] };
      this.predictions.push(...body.results.map((r) => r.id));
      const target = this.predictions[Math.max(0, this.predictions.length - 7)];
      await this.label(svc, target, i % 2 === 0);
    }
  }

  async label(svc: ServiceProcess, id: string, label: boolean): Promise<number> {
    const res = await postJson(`${svc.url}/v1/feedback`, { items: [{ id, label: label ? 1 : 0 }], source: 'crash-test' });
    if (res.status === 202) {
      const [item] = ((await res.json()) as { items: { status: string }[] }).items;
      expect(['stored', 'updated']).toContain(item.status);
      this.labels.set(id, label);
    } else {
      expect(res.status).toBe(503); // feedback for a prediction already in an unreachable database cannot be checked
      this.refusedFeedback += 1;
    }
    return res.status;
  }
}

const metric = (text: string, series: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
};

/** Waits until the service reports nothing waiting for the database and the database up. */
async function waitUntilWritten(svc: ServiceProcess, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    // a connection reset is not an answer: creating an embedded database holds the service's thread for a while
    const res = await fetch(`${svc.url}/metrics`).catch(() => undefined);
    if (!res) {
      await sleep(500);
      continue;
    }
    last = await res.text();
    const waiting = metric(last, 'toxscope_write_queue_entries{where="memory"}') + metric(last, 'toxscope_write_queue_entries{where="journal"}');
    if (waiting === 0 && metric(last, 'toxscope_database_up') === 1) return;
    await sleep(200);
  }
  throw new Error(`rows still waiting after ${timeoutMs} ms:\n${last.split('\n').filter((l) => /write_|database_up/.test(l)).join('\n')}\n${svc.log()}`);
}

/** Waits until /readyz says the database is open and migrated. */
async function waitForDatabase(svc: ServiceProcess, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const body = (await (await fetch(`${svc.url}/readyz`)).json()) as { database?: string };
    if (body.database === 'up') return;
    await sleep(200);
  }
  throw new Error(`the database did not come up within ${timeoutMs} ms:\n${svc.log()}`);
}

/** Every answered prediction exactly once, nothing else; every accepted label stored, the latest winning. */
async function expectStoredOnce(db: DbHandle, ledger: Ledger): Promise<void> {
  const rows = await executeRows<{ id: string }>(db.db, sql`select id from predictions`);
  expect(rows.length).toBe(ledger.predictions.length);
  expect(new Set(rows.map((r) => r.id))).toEqual(new Set(ledger.predictions));
  const fb = await executeRows<{ prediction_id: string; label: boolean }>(db.db, sql`select prediction_id, label from feedback`);
  expect(fb.length).toBe(ledger.labels.size);
  expect(new Map(fb.map((r) => [r.prediction_id, r.label]))).toEqual(ledger.labels);
}

describe('kill -9 with answered rows not yet in the database', () => {
  it('embedded PGlite: rows answered but not yet flushed survive a SIGKILL and are stored once after the restart', { timeout: TEST_TIMEOUT }, async () => {
    const dataDir = join(root, 'pglite-data');
    const env = { TOXSCOPE_BUNDLE: bundleDir, TOXSCOPE_DATA_DIR: dataDir };
    const ledger = new Ledger();
    // a write every 10 minutes: everything answered below is still waiting for PGlite when the process dies
    const first = await spawnService({ ...env, TOXSCOPE_WRITE_FLUSH_MS: '600000' });
    try {
      await waitForDatabase(first); // created and migrated: what is lost below is only what was not yet written
      await ledger.run(first, 12, 'pglite');
      const m = await (await fetch(`${first.url}/metrics`)).text();
      expect(metric(m, 'toxscope_write_queue_written_total')).toBe(0);
    } finally {
      await first.kill9();
    }
    expect(ledger.predictions.length).toBe(36);
    expect(ledger.labels.size).toBeGreaterThan(5);

    const second = await spawnService(env);
    let code: number | null;
    try {
      await ledger.run(second, 3, 'pglite-after');
      await waitUntilWritten(second);
      const m = await (await fetch(`${second.url}/metrics`)).text();
      expect(metric(m, 'toxscope_write_queue_replayed_total')).toBeGreaterThanOrEqual(36 + 12);
    } finally {
      code = await second.stop();
    }
    expect(code).toBe(0);
    const db = await createDb({ dataDir, migrate: false });
    try {
      await expectStoredOnce(db, ledger);
    } finally {
      await db.close();
    }
  });
});

describe('embedded PGlite unusable at start', () => {
  it('serves and journals without it, then creates it, migrates and stores every row once when it becomes usable', { timeout: TEST_TIMEOUT }, async () => {
    const dataDir = join(root, 'pglite-late');
    // something else occupies the embedded database's directory (a volume not ready, a stray file): it cannot open
    mkdirSync(join(dataDir, 'pglite'), { recursive: true });
    writeFileSync(join(dataDir, 'pglite', 'not-a-database'), 'x');
    const ledger = new Ledger();
    const svc = await spawnService({ TOXSCOPE_BUNDLE: bundleDir, TOXSCOPE_DATA_DIR: dataDir });
    let code: number | null;
    try {
      expect(await (await fetch(`${svc.url}/readyz`)).json()).toMatchObject({ status: 'ready', degraded: true, database: 'connecting' });
      await ledger.run(svc, 5, 'late');
      expect(svc.log()).toMatch(/database unavailable: classifying without it/);
      rmSync(join(dataDir, 'pglite'), { recursive: true, force: true });
      await waitUntilWritten(svc, 120_000);
    } finally {
      code = await svc.stop();
    }
    expect(code).toBe(0);
    const db = await createDb({ dataDir, migrate: false });
    try {
      await expectStoredOnce(db, ledger);
    } finally {
      await db.close();
    }
  });
});

describe.skipIf(!DATABASE_URL)('kill -9 during a Postgres outage, restart while it is still down (DATABASE_URL)', () => {
  it('every answered prediction and accepted label is stored exactly once when Postgres returns', { timeout: TEST_TIMEOUT }, async () => {
    const fresh = await freshPostgresDatabase('toxscope_crash');
    const target = new URL(fresh.url);
    const proxy = await tcpProxy(target.hostname, Number(target.port || 5432));
    const viaProxy = new URL(fresh.url);
    viaProxy.port = String(proxy.port);
    const env = { TOXSCOPE_BUNDLE: bundleDir, TOXSCOPE_DATA_DIR: join(root, 'pg-data'), DATABASE_URL: viaProxy.toString() };
    const ledger = new Ledger();
    let second: ServiceProcess | undefined;
    try {
      const first = await spawnService(env);
      try {
        await ledger.run(first, 3, 'before'); // written before the outage
        await waitUntilWritten(first);
        await proxy.cut();
        await ledger.run(first, 12, 'outage');
        // a label for a prediction already in the (unreachable) database cannot be checked: refused, not kept
        expect(await ledger.label(first, ledger.predictions[0], true)).toBe(503);
      } finally {
        await first.kill9();
      }
      // the failed writes were logged, with their cause and without their SQL parameters (ids, hashes, labels)
      expect(first.log()).toMatch(/"msg":"database write failed","code":"[A-Z0-9_]+","message":"/);
      expect(first.log()).not.toMatch(/params:|Failed query/);
      for (const id of ledger.predictions) expect(first.log()).not.toContain(id);

      second = await spawnService(env); // Postgres is still unreachable
      const ready = (await (await fetch(`${second.url}/readyz`)).json()) as Record<string, unknown>;
      expect(ready).toMatchObject({ status: 'ready', degraded: true, database: 'connecting' });
      await ledger.run(second, 4, 'restarted');
      // labels for predictions answered by the killed process: they are in the journal, so they are accepted
      const earlier = ledger.predictions.slice(9, 12);
      for (const id of earlier) expect(await ledger.label(second, id, true)).toBe(202);

      await proxy.restore();
      await waitUntilWritten(second);
      const after = (await (await fetch(`${second.url}/readyz`)).json()) as Record<string, unknown>;
      expect(after).toMatchObject({ status: 'ready', degraded: false, database: 'up' });
      const direct = await createDb({ url: fresh.url, migrate: false });
      try {
        await expectStoredOnce(direct, ledger);
      } finally {
        await direct.close();
      }
      expect(await second.stop()).toBe(0);
    } finally {
      await second?.kill9();
      await proxy.close();
      await fresh.drop();
    }
  });

  it('starts with Postgres unreachable (never migrated), classifies, and migrates and stores every row once when it comes', { timeout: TEST_TIMEOUT }, async () => {
    const fresh = await freshPostgresDatabase('toxscope_nodb');
    const target = new URL(fresh.url);
    const proxy = await tcpProxy(target.hostname, Number(target.port || 5432));
    await proxy.cut();
    const viaProxy = new URL(fresh.url);
    viaProxy.port = String(proxy.port);
    const ledger = new Ledger();
    let svc: ServiceProcess | undefined;
    try {
      svc = await spawnService({ TOXSCOPE_BUNDLE: bundleDir, TOXSCOPE_DATA_DIR: join(root, 'nodb-data'), DATABASE_URL: viaProxy.toString() });
      const ready = await fetch(`${svc.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ degraded: true, database: 'connecting' });
      await ledger.run(svc, 8, 'nodb');
      expect(ledger.refusedFeedback).toBe(0); // every label was for a journaled prediction
      expect(svc.log()).toMatch(/database unavailable: classifying without it/);

      await proxy.restore();
      await waitUntilWritten(svc);
      const direct = await createDb({ url: fresh.url, migrate: false });
      try {
        await expectStoredOnce(direct, ledger);
      } finally {
        await direct.close();
      }
      expect(await svc.stop()).toBe(0);
    } finally {
      await svc?.kill9();
      await proxy.close();
      await fresh.drop();
    }
  });
});
