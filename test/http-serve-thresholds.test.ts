/**
 * Threshold changes survive the service: startService (the composition root) on a trained bundle, a PUT
 * /admin/thresholds, a graceful shutdown and a restart on the same database (the embedded PGlite in the data
 * directory; a fresh Postgres database too when DATABASE_URL is set). A bundle of another version does not
 * get them; reloading the first version brings them back. On Postgres, two services sharing the database
 * converge after one sync.
 */
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createDb } from '../src/db/client.js';
import { createRepository } from '../src/db/repository.js';
import { createLogger } from '../src/util/logger.js';
import { startService, type RunningService } from '../src/main.js';
import type { Logger } from '../src/util/logger.js';
import { DATABASE_URL, DRIVERS, freshPostgresDatabase, tcpProxy, type FreshDatabase } from './helpers/db.js';
import { trainServeBundle } from './helpers/serve-bundle.js';

const root = mkdtempSync(join(tmpdir(), 'toxscope-serve-thresholds-'));
const bundleDir = join(root, 'bundle');
const otherBundleDir = join(root, 'bundle-other');
const token = 'serve-thresholds-admin-token-123';
const quiet = createLogger('silent');
let bundleVersion: string;
const GERMAN = 0.6; // the bundle's own German threshold

beforeAll(async () => {
  await trainServeBundle(bundleDir, 'thresholds-test', join(root, 'cache'));
  // 120 texts per language are too few to give a language its own threshold (200 on the calibration split):
  // release the head with a German one, as a larger training set would, under a new version and sha256
  const headPath = join(bundleDir, 'head.json');
  const head = JSON.parse(readFileSync(headPath, 'utf8')) as { thresholds: { perLanguage: Record<string, number> } };
  head.thresholds.perLanguage.de = GERMAN;
  const headBytes = JSON.stringify(head);
  writeFileSync(headPath, headBytes);
  const manifestPath = join(bundleDir, 'manifest.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { version: string; head: { sha256: string } };
  bundleVersion = `${manifest.version}-de`;
  writeFileSync(manifestPath, JSON.stringify({ ...manifest, version: bundleVersion, head: { ...manifest.head, sha256: createHash('sha256').update(headBytes).digest('hex') } }));
  // the same head released under another version
  cpSync(bundleDir, otherBundleDir, { recursive: true });
  writeFileSync(join(otherBundleDir, 'manifest.json'), JSON.stringify({ ...JSON.parse(readFileSync(manifestPath, 'utf8')), version: `${bundleVersion}-other` }));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
const getJson = async (url: string, init: RequestInit = {}) => {
  const res = await fetch(url, init);
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as any;
};
const thresholds = (svc: RunningService) => getJson(`${svc.url}/admin/thresholds`, { headers: auth });
const put = (svc: RunningService, body: unknown) => getJson(`${svc.url}/admin/thresholds`, { method: 'PUT', headers: auth, body: JSON.stringify(body) });
const reload = (svc: RunningService, path: string) => getJson(`${svc.url}/admin/reload`, { method: 'POST', headers: auth, body: JSON.stringify({ path }) });
const classify = async (svc: RunningService, text: string, language: string) =>
  (await getJson(`${svc.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ texts: [text], language }) })).results[0];

describe.each(DRIVERS)('threshold overrides across restarts (%s)', (driver) => {
  let fresh: FreshDatabase | undefined;
  const dataDir = join(root, `data-${driver}`);
  const start = async () => {
    const env: Record<string, string> = { PORT: '0', HOST: '127.0.0.1', TOXSCOPE_BUNDLE: bundleDir, TOXSCOPE_DATA_DIR: dataDir, TOXSCOPE_ADMIN_TOKEN: token, TOXSCOPE_THREADS: '1' };
    if (fresh) env.DATABASE_URL = fresh.url;
    const svc = await startService(loadConfig({ env }), quiet);
    await svc.ready;
    return svc;
  };
  beforeAll(async () => {
    if (driver === 'postgres') fresh = await freshPostgresDatabase();
  });
  afterAll(() => fresh?.drop());

  let bundle: { pooled: number; per_language: Record<string, number> };

  it('serves a change and a removal at once, records them for the bundle version', async () => {
    const svc = await start();
    try {
      const before = await thresholds(svc);
      bundle = before.bundle;
      expect(before.bundle_version).toBe(bundleVersion);
      expect(bundle.per_language.de).toBe(GERMAN);
      expect(await classify(svc, 'Guten Morgen zusammen', 'de')).toMatchObject({ threshold: GERMAN, language: { thresholds: 'de' } });
      expect(Object.values(before.sources).every((s) => s === 'bundle')).toBe(true);

      const after = await put(svc, { thresholds: { en: 0.123456789, pooled: 0.42, de: null }, actor: 'ops', reason: 'restart test' });
      expect(after).toMatchObject({ pooled: 0.42, per_language: { en: 0.123456789 }, sources: { pooled: 'override', en: 'override', de: 'removed' }, bundle });
      expect(after.per_language).not.toHaveProperty('de');
      expect(await classify(svc, 'Guten Morgen zusammen', 'de')).toMatchObject({ threshold: 0.42, language: { thresholds: 'pooled' } });
      const audit = await getJson(`${svc.url}/admin/audit`, { headers: auth });
      const row = (language: string, old: number | null, now: number, removed: boolean) => ({ language, old, new: now, removed, bundle_version: bundleVersion, actor: 'ops', reason: 'restart test' });
      expect(audit.changes).toHaveLength(3);
      expect(audit.changes).toEqual(
        expect.arrayContaining([
          expect.objectContaining(row('en', null, 0.123456789, false)), // en had no own threshold
          expect.objectContaining(row('pooled', bundle.pooled, 0.42, false)),
          expect.objectContaining(row('de', GERMAN, 0.42, true)), // removed: it falls back to the (new) pooled value
        ]),
      );
    } finally {
      await svc.shutdown('test');
    }
  });

  it('keeps the change and the removal after a restart on the same database', async () => {
    const svc = await start();
    try {
      const now = await thresholds(svc);
      expect(now).toMatchObject({ bundle_version: bundleVersion, pooled: 0.42, sources: { pooled: 'override', en: 'override', de: 'removed' }, bundle });
      expect(now.per_language.en).toBe(0.123456789); // exactly the value set
      expect(now.per_language).not.toHaveProperty('de');
      expect(await classify(svc, 'you are an idiot', 'en')).toMatchObject({ threshold: 0.123456789, language: { thresholds: 'en' } });
      expect(await classify(svc, 'Guten Morgen zusammen', 'de')).toMatchObject({ threshold: 0.42, language: { thresholds: 'pooled' } });
    } finally {
      await svc.shutdown('test');
    }
  });

  it("does not apply them to a bundle of another version, and a reload of the first version brings them back", async () => {
    const svc = await start();
    try {
      expect(await reload(svc, otherBundleDir)).toMatchObject({ bundle_version: `${bundleVersion}-other` });
      const other = await thresholds(svc);
      expect(other).toMatchObject({ pooled: bundle.pooled, per_language: bundle.per_language });
      expect(Object.values(other.sources).every((s) => s === 'bundle')).toBe(true);
      expect(await classify(svc, 'Guten Morgen zusammen', 'de')).toMatchObject({ threshold: GERMAN, language: { thresholds: 'de' } });

      await reload(svc, bundleDir);
      expect(await thresholds(svc)).toMatchObject({ bundle_version: bundleVersion, pooled: 0.42, per_language: { en: 0.123456789 }, sources: { de: 'removed' } });
    } finally {
      await svc.shutdown('test');
    }
  });
});

describe.skipIf(!DATABASE_URL)('two services on one Postgres database (DATABASE_URL)', () => {
  it('converge on a threshold change after one sync', async () => {
    const fresh = await freshPostgresDatabase();
    const start = async (name: string) => {
      const env = { PORT: '0', HOST: '127.0.0.1', TOXSCOPE_BUNDLE: bundleDir, TOXSCOPE_DATA_DIR: join(root, `replica-${name}`), TOXSCOPE_ADMIN_TOKEN: token, TOXSCOPE_THREADS: '1', DATABASE_URL: fresh.url };
      const svc = await startService(loadConfig({ env }), quiet);
      await svc.ready;
      return svc;
    };
    const a = await start('a');
    const b = await start('b');
    try {
      await put(a, { thresholds: { en: 0.31, de: null } });
      expect((await thresholds(b)).sources).toEqual({ pooled: 'bundle', de: 'bundle' }); // not yet: b has not synced
      expect(await b.syncThresholds()).toMatchObject({ status: 'changed', version: bundleVersion, changed: ['de', 'en'] });
      expect(await thresholds(b)).toMatchObject({ per_language: { en: 0.31 }, sources: { en: 'override', de: 'removed' } });
      expect(await classify(b, 'you are an idiot', 'en')).toMatchObject({ threshold: 0.31 });
      expect(await a.syncThresholds()).toMatchObject({ status: 'unchanged' }); // a already serves what it recorded
    } finally {
      await a.shutdown('test');
      await b.shutdown('test');
      await fresh.drop();
    }
  });

  it('serve the last overrides the database answered when it is down at load, notice the outage while idle, and follow the database when it returns', { timeout: 400_000 }, async () => {
    const fresh = await freshPostgresDatabase();
    const target = new URL(fresh.url);
    const proxy = await tcpProxy(target.hostname, Number(target.port || 5432));
    const proxied = new URL(fresh.url);
    proxied.port = String(proxy.port);
    const warnings: string[] = [];
    const log: Logger = { debug: () => undefined, info: () => undefined, error: () => undefined, warn: (msg) => warnings.push(msg) };
    const dataDir = join(root, 'replica-outage');
    const env = { PORT: '0', HOST: '127.0.0.1', TOXSCOPE_BUNDLE: bundleDir, TOXSCOPE_DATA_DIR: dataDir, TOXSCOPE_ADMIN_TOKEN: token, TOXSCOPE_THREADS: '1', DATABASE_URL: proxied.toString(), TOXSCOPE_DB_PING_MS: '100' };
    const readyz = async (svc: RunningService) => (await fetch(`${svc.url}/readyz`)).json() as Promise<any>;
    const databaseUp = async (svc: RunningService) => /^toxscope_database_up (\S+)$/m.exec(await (await fetch(`${svc.url}/metrics`)).text())?.[1];
    let svc = await startService(loadConfig({ env }), log);
    try {
      await svc.ready;
      await put(svc, { thresholds: { en: 0.29 } });
      expect(await readyz(svc)).toMatchObject({ status: 'ready', degraded: false, database: 'up' });
      await proxy.cut();
      // nothing is written from here on: readiness and the metric learn of the outage from the ping alone
      await vi.waitFor(async () => expect(await readyz(svc)).toMatchObject({ status: 'ready', degraded: true, database: 'unreachable' }), { timeout: 30_000, interval: 50 });
      expect(await databaseUp(svc)).toBe('0');

      // a reload during the outage serves the overrides the database answered last (kept in the data directory)
      await reload(svc, bundleDir);
      expect(await thresholds(svc)).toMatchObject({ per_language: { en: 0.29, de: GERMAN }, sources: { pooled: 'bundle', de: 'bundle', en: 'override' } });
      expect(warnings).toContainEqual(expect.stringMatching(/threshold overrides could not be read: serving the last ones the database answered/));
      expect(await svc.syncThresholds()).toMatchObject({ status: 'unchanged' });
      // so does a restart during the outage (a crash restart, a scale-up)
      await svc.shutdown('test');
      svc = await startService(loadConfig({ env }), log);
      await svc.ready;
      expect(await thresholds(svc)).toMatchObject({ per_language: { en: 0.29, de: GERMAN }, sources: { en: 'override' } });

      // the database stays the source of truth: a change another replica recorded meanwhile wins once it answers
      const direct = await createDb({ url: fresh.url, migrate: false });
      await createRepository(direct.db).recordThresholdChange({ actor: 'bob', language: 'en', oldThreshold: 0.29, newThreshold: 0.35, bundleVersion });
      await direct.close();
      await proxy.restore();
      await vi.waitFor(async () => expect(await readyz(svc)).toMatchObject({ degraded: false, database: 'up' }), { timeout: 60_000, interval: 50 });
      await vi.waitFor(async () => expect(await thresholds(svc)).toMatchObject({ per_language: { en: 0.35 }, sources: { en: 'override' } }), { timeout: 60_000, interval: 100 });
      expect(await databaseUp(svc)).toBe('1');
    } finally {
      await proxy.restore().catch(() => undefined);
      await svc.shutdown('test');
      await proxy.close();
      await fresh.drop();
    }
  });
});
