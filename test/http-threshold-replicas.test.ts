/**
 * Two app instances (replicas) on one database, through HTTP: a threshold change made on one is served by
 * the other after one sync (ThresholdSync over the real repository), on PGlite always and on Postgres with
 * DATABASE_URL (a second connection pool: a second process would see the same).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRepository } from '../src/db/repository.js';
import { ThresholdSync } from '../src/service/threshold-sync.js';
import { ADMIN_TOKEN, buildTestApp, post, request, type TestApp } from './helpers/app.js';
import { DRIVERS, openTestDb, type TestDb } from './helpers/db.js';

const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };

describe.each(DRIVERS)('replicas on one %s database', (driver) => {
  let db: TestDb;
  const replicas: { app: TestApp; sync: ThresholdSync }[] = [];

  beforeAll(async () => {
    db = await openTestDb(driver);
    for (let i = 0; i < 2; i++) {
      const repo = createRepository(i === 0 ? db.handle.db : (await db.openAnother()).db);
      const app = await buildTestApp({ env: { TOXSCOPE_ADMIN_TOKEN: ADMIN_TOKEN }, deps: { audit: repo } });
      const sync = new ThresholdSync({ source: repo, current: () => app.host.peek()?.classifier ?? null, intervalMs: 60_000 });
      replicas.push({ app, sync });
    }
  });
  afterAll(async () => {
    for (const r of replicas) await r.app.close();
    await db?.dispose();
  });

  const get = async (i: number) => (await request(replicas[i].app.app, '/admin/thresholds', { headers: auth })).json();
  const classify = async (i: number, text: string, language: string) => (await (await post(replicas[i].app.app, '/v1/classify', { texts: [text], language })).json()).results[0];

  it('serve a change made on one replica on the other after one sync, and agree afterwards', async () => {
    const before = await get(1);
    expect(before.pooled).toBe((await get(0)).pooled);
    const res = await request(replicas[0].app.app, '/admin/thresholds', { method: 'PUT', headers: auth, body: JSON.stringify({ thresholds: { pooled: 0.37, fr: 0.81 }, actor: 'ops' }) });
    expect(res.status).toBe(200);

    expect(await get(1)).toEqual(before); // replica 1 has not synced yet
    expect(await replicas[1].sync.sync()).toMatchObject({ status: 'changed', changed: ['pooled', 'fr'] });
    const synced = await get(1);
    expect(synced).toMatchObject({ pooled: 0.37, per_language: { fr: 0.81 }, sources: { pooled: 'override', fr: 'override' } });
    expect(synced).toEqual(await get(0));
    expect(await classify(1, 'bonjour tout le monde', 'fr')).toMatchObject({ threshold: 0.81, language: { thresholds: 'fr' } });
    expect(await classify(1, 'hola a todos', 'es')).toMatchObject({ threshold: 0.37, language: { thresholds: 'pooled' } });

    // a removal on replica 1 travels back to replica 0
    await request(replicas[1].app.app, '/admin/thresholds', { method: 'PUT', headers: auth, body: JSON.stringify({ thresholds: { fr: null } }) });
    expect(await replicas[0].sync.sync()).toMatchObject({ status: 'changed', changed: ['fr'] });
    expect(await classify(0, 'bonjour tout le monde', 'fr')).toMatchObject({ threshold: 0.37, language: { thresholds: 'pooled' } });
    expect(await get(0)).toEqual(await get(1));
    for (const r of replicas) expect(await r.sync.sync()).toMatchObject({ status: 'unchanged' });
  });
});
