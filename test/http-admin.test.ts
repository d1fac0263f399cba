/**
 * Admin, feedback, drift and audit through the real database layer: an in-memory PGlite with the
 * project's migrations, the repository and the write queue (src/db), as the service runs them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRepository, type Repository } from '../src/db/repository.js';
import { WriteQueue } from '../src/db/write-queue.js';
import { driftReport } from '../src/drift/monitor.js';
import { ADMIN_TOKEN, buildTestApp, post, request, writeTinyBundle, type TestApp } from './helpers/app.js';
import { openTestDb, type TestDb } from './helpers/db.js';

let t: TestApp;
let db: TestDb;
let repo: Repository;
let queue: WriteQueue;
const spillDir = mkdtempSync(join(tmpdir(), 'toxscope-http-spill-'));

beforeAll(async () => {
  db = await openTestDb('pglite');
  repo = createRepository(db.handle.db);
  queue = new WriteQueue({ repo, journalDir: join(spillDir, 'journal'), flushDelayMs: 1 });
  t = await buildTestApp({
    env: { TOXSCOPE_ADMIN_TOKEN: ADMIN_TOKEN },
    deps: { predictions: queue, audit: repo, drift: (q) => driftReport(repo, { en: 0.8 }, q) },
  });
});
afterAll(async () => {
  await t?.close();
  await queue?.close();
  await db?.dispose();
  rmSync(spillDir, { recursive: true, force: true });
});

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
const admin = (path: string, init: RequestInit = {}) => request(t.app, path, { ...init, headers: { ...auth, 'content-type': 'application/json', ...(init.headers as object) } });
const classify = async (texts: string[], language = 'en') => (await post(t.app, '/v1/classify', { texts, language })).json();

describe('admin authentication', () => {
  it('is 403 with the reason when no admin token is configured', async () => {
    const closed = await buildTestApp();
    try {
      const res = await request(closed.app, '/admin/thresholds', { headers: auth });
      expect(res.status).toBe(403);
      expect((await res.json()).error.message).toMatch(/disabled.*TOXSCOPE_ADMIN_TOKEN/);
    } finally {
      await closed.close();
    }
  });

  it('is 401 without a token or with a wrong one, 200 with the right one', async () => {
    const none = await request(t.app, '/admin/thresholds');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/Bearer/);
    expect((await request(t.app, '/admin/thresholds', { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    expect((await request(t.app, '/admin/thresholds', { headers: { authorization: `Bearer ${ADMIN_TOKEN}x` } })).status).toBe(401);
    expect((await request(t.app, '/admin/thresholds', { headers: { authorization: `Basic ${ADMIN_TOKEN}` } })).status).toBe(401);
    const ok = await admin('/admin/thresholds');
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ bundle_version: 'tiny-v1', pooled: expect.any(Number) });
  });
});

describe('thresholds', () => {
  it('applies a change to the next request and records who, when, old and new', async () => {
    const before = (await classify(['you absolute fool'], 'en')).results[0];
    const res = await admin('/admin/thresholds', { method: 'PUT', body: JSON.stringify({ thresholds: { en: 0.999, pooled: 0.25 }, actor: 'alice', reason: 'test' }) });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ pooled: 0.25, per_language: { en: 0.999 } });
    const after = (await classify(['you absolute fool'], 'en')).results[0];
    expect(after.score).toBeCloseTo(before.score, 9);
    expect(after.threshold).toBe(0.999);
    expect(after.toxic).toBe(after.score >= 0.999);
    expect((await classify(['bla'], 'xx')).results[0].threshold).toBe(0.25);

    const audit = await (await admin('/admin/audit?language=en')).json();
    expect(audit.changes[0]).toMatchObject({ actor: 'alice', language: 'en', reason: 'test' });
    expect(audit.changes[0].old).toBeCloseTo(before.threshold, 6); // stored as float4
    expect(audit.changes[0].new).toBeCloseTo(0.999, 6);
    expect(Date.now() - Date.parse(audit.changes[0].at)).toBeLessThan(60_000);
  });

  it('refuses thresholds outside [0, 1] and malformed keys with 422, changing nothing', async () => {
    const before = await (await admin('/admin/thresholds')).json();
    for (const thresholds of [{ en: 1.5 }, { en: -0.1 }, { english: 0.5 }, {}, { pooled: null }]) {
      const res = await admin('/admin/thresholds', { method: 'PUT', body: JSON.stringify({ thresholds }) });
      expect(res.status, JSON.stringify(thresholds)).toBe(422);
    }
    expect(await (await admin('/admin/thresholds')).json()).toEqual(before);
  });

  it('removes a language threshold with null so it falls back to pooled', async () => {
    await admin('/admin/thresholds', { method: 'PUT', body: JSON.stringify({ thresholds: { de: 0.7 } }) });
    expect((await classify(['hallo'], 'de')).results[0].language.thresholds).toBe('de');
    await admin('/admin/thresholds', { method: 'PUT', body: JSON.stringify({ thresholds: { de: null } }) });
    const r = (await classify(['hallo'], 'de')).results[0];
    expect(r.language.thresholds).toBe('pooled');
  });
});

describe('reload', () => {
  it('refuses a broken bundle with 422 while requests keep succeeding on the old one', async () => {
    const broken = join(t.dir, 'broken');
    writeTinyBundle(broken, 'tiny-broken', { format: 'toxscope-head', version: 1, weights: 'nope' });
    const during = Array.from({ length: 8 }, (_, i) => classify([`request ${i} during a reload`]));
    const res = await admin('/admin/reload', { method: 'POST', body: JSON.stringify({ path: broken }) });
    expect(res.status).toBe(422);
    expect((await res.json()).error.message).toMatch(/bundle refused, the previous bundle keeps serving: .*head\.json/);
    for (const r of await Promise.all(during)) expect(r.bundle_version).toBe('tiny-v1');
    expect((await classify(['after'])).bundle_version).toBe('tiny-v1');
    writeFileSync(join(broken, 'bundle.json'), '{not json');
    expect((await admin('/admin/reload', { method: 'POST', body: JSON.stringify({ path: broken }) })).status).toBe(422);
  });

  it('swaps in a good bundle without dropping requests in flight', async () => {
    const good = writeTinyBundle(join(t.dir, 'v2'), 'tiny-v2', t.headJson);
    const during = Array.from({ length: 8 }, (_, i) => classify([`in flight ${i}`]));
    const res = await admin('/admin/reload', { method: 'POST', body: JSON.stringify({ path: good }) });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'reloaded', previous_version: 'tiny-v1', bundle_version: 'tiny-v2' });
    const versions = (await Promise.all(during)).map((r) => r.bundle_version);
    expect(versions.every((v) => v === 'tiny-v1' || v === 'tiny-v2')).toBe(true);
    expect((await classify(['after the swap'])).bundle_version).toBe('tiny-v2');
  });
});

describe('POST /v1/feedback', () => {
  it('stores labels for known predictions, reports unknown ids, and says when a repeat replaced a label', async () => {
    const ids = (await classify(['first', 'second'])).results.map((r: { id: string }) => r.id);
    const res = await post(t.app, '/v1/feedback', { items: [{ id: ids[0], label: 1 }, { id: 'no-such-prediction', label: 0 }] });
    expect(res.status).toBe(202);
    expect((await res.json()).items).toEqual([
      { id: ids[0], attribute: 'toxicity', status: 'stored' },
      { id: 'no-such-prediction', attribute: 'toxicity', status: 'unknown_id', note: 'no prediction with this id' },
    ]);
    await queue.flush();
    const again = await (await post(t.app, '/v1/feedback', { items: [{ id: ids[0], label: 0 }] })).json();
    expect(again.items[0]).toMatchObject({ id: ids[0], status: 'updated', note: expect.stringMatching(/latest wins/) });
  });

  it('answers malformed feedback with 422', async () => {
    for (const body of [{ items: [] }, { items: [{ id: 'x', label: 2 }] }, { items: [{ id: 'x' }] }, { items: [{ id: '', label: 1 }] }]) {
      expect((await post(t.app, '/v1/feedback', body)).status, JSON.stringify(body)).toBe(422);
    }
  });
});

describe('GET /admin/drift', () => {
  it('reports per-language F1 of labeled predictions against the baseline', async () => {
    const r = await classify(['drift one', 'drift two', 'drift three']);
    const items = r.results.map((p: { id: string; toxic: boolean }, i: number) => ({ id: p.id, label: i === 0 ? (p.toxic ? 0 : 1) : p.toxic ? 1 : 0 }));
    await post(t.app, '/v1/feedback', { items });
    await queue.flush();
    const body = await (await admin('/admin/drift?language=en&window=1h')).json();
    expect(body.languages.en.n).toBeGreaterThanOrEqual(3);
    expect(body.languages.en.baseline).toBe(0.8);
    expect(await (await admin('/admin/drift?window=forever')).json()).toMatchObject({ error: { kind: 'validation' } });
  });

  it('reads a language tag as the code predictions are stored under (EN-GB -> en), as classify does', async () => {
    const r = await classify(['tagged drift'], 'EN-GB');
    await post(t.app, '/v1/feedback', { items: [{ id: r.results[0].id, label: 1 }] });
    await queue.flush();
    const byCode = await (await admin('/admin/drift?language=en&window=1h')).json();
    const byTag = await (await admin('/admin/drift?language=EN-GB&window=1h')).json();
    expect(Object.keys(byTag.languages)).toEqual(['en']);
    expect(byTag.languages.en).toEqual(byCode.languages.en);
    expect(byTag.languages.en.n).toBeGreaterThanOrEqual(1);
  });
});
