/**
 * ThresholdSync (src/engine/threshold-sync.ts) against the real repository: the serving head is the bundle's
 * head with the overrides stored for its version; a failing database leaves the head alone; a change made
 * while the overrides were being read wins over what was read.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../src/db/client.js';
import { createRepository, type NewThresholdChangeInput, type Repository } from '../src/db/repository.js';
import { applyOverrides, changedThresholds, thresholdSources, ThresholdSync, type HeadHolder } from '../src/service/threshold-sync.js';
import { FeatureTransform } from '../src/head/features.js';
import { Head } from '../src/head/head.js';
import { DATABASE_URL, DRIVERS, openTestDb, tcpProxy, type TestDb } from './helpers/db.js';

const bundleHead = new Head({
  transform: new FeatureTransform({ dSae: 4, parts: ['rate'], normalize: false, languages: [], idf: new Float32Array(4).fill(1) }),
  weights: Float32Array.of(1, -1, 0.5, 0),
  bias: 0,
  calibration: { method: 'platt', pooled: { kind: 'platt', a: 1, b: 0 }, perLanguage: {} },
  thresholds: { pooled: 0.5, perLanguage: { en: 0.6, de: 0.7 } },
});

/** What a Classifier exposes to the sync, over a real Head. */
function holder(version: string): HeadHolder & { swaps: number } {
  let head = bundleHead;
  return {
    version,
    bundleHead,
    swaps: 0,
    get head() {
      return head;
    },
    setHead(h) {
      head = h;
      this.swaps++;
    },
  };
}

const change = (bundleVersion: string, language: string, newThreshold: number, removed = false): NewThresholdChangeInput => ({
  actor: 'ops',
  language,
  oldThreshold: null,
  newThreshold,
  bundleVersion,
  removed,
});

describe('thresholdSources and changedThresholds', () => {
  it("say which thresholds are the bundle's, set by an override, or removed", () => {
    const serving = bundleHead.withThresholds({ pooled: 0.4, en: 0.6, de: null, fr: 0.3 }).thresholds;
    expect(thresholdSources(bundleHead.thresholds, serving)).toEqual({ pooled: 'override', de: 'removed', en: 'bundle', fr: 'override' });
    expect(thresholdSources(bundleHead.thresholds, bundleHead.thresholds)).toEqual({ pooled: 'bundle', de: 'bundle', en: 'bundle' });
    expect(changedThresholds(bundleHead.thresholds, serving)).toEqual(['pooled', 'de', 'fr']);
  });
});

describe.each(DRIVERS)('ThresholdSync on %s', (driver) => {
  let t: TestDb;
  let repo: Repository;
  beforeAll(async () => {
    t = await openTestDb(driver);
    repo = createRepository(t.handle.db);
  });
  afterAll(() => t?.dispose());

  it("applies the stored overrides of the holder's version on top of the bundle's thresholds", async () => {
    await repo.recordThresholdChanges([change('v1', 'en', 0.9), change('v1', 'pooled', 0.45), change('v1', 'de', 0.45, true), change('v2', 'en', 0.1)]);
    const h = holder('v1');
    const sync = new ThresholdSync({ source: repo, current: () => h, intervalMs: 60_000 });
    expect(await sync.apply(h)).toEqual({ status: 'changed', version: 'v1', overrides: { en: 0.9, pooled: 0.45, de: null }, changed: ['pooled', 'de', 'en'] });
    expect(h.head.thresholds).toEqual({ pooled: 0.45, perLanguage: { en: 0.9 } });
    expect(h.bundleHead.thresholds).toEqual({ pooled: 0.5, perLanguage: { en: 0.6, de: 0.7 } });
    expect(await sync.sync()).toEqual({ status: 'unchanged', version: 'v1' });
    expect(h.swaps).toBe(1);

    // another replica restores a German threshold: the next sync swaps the head once more
    await repo.recordThresholdChange(change('v1', 'de', 0.65));
    const next = await sync.sync();
    expect(next).toMatchObject({ status: 'changed', changed: ['de'] });
    expect(h.head.thresholds).toEqual({ pooled: 0.45, perLanguage: { en: 0.9, de: 0.65 } });
  });

  it("leaves a bundle of a version with no overrides on the bundle's thresholds", async () => {
    const h = holder('v-none');
    expect(await applyOverrides(h, repo)).toEqual({ status: 'unchanged', version: 'v-none' });
    expect(h.head).toBe(bundleHead);
  });

  it('keeps the thresholds it has when the database does not answer, and catches up once it does', async () => {
    const h = holder('v1');
    let down = true;
    const flaky = { thresholdOverrides: (v: string) => (down ? Promise.reject(new Error('connection refused')) : repo.thresholdOverrides(v)) };
    const sync = new ThresholdSync({ source: flaky, current: () => h, intervalMs: 60_000 });
    const failed = await sync.apply(h);
    expect(failed).toMatchObject({ status: 'failed', version: 'v1', error: expect.objectContaining({ message: 'connection refused' }) });
    expect(h.head).toBe(bundleHead);
    down = false;
    expect(await sync.sync()).toMatchObject({ status: 'changed', version: 'v1' });
    expect(h.head.thresholds.perLanguage.en).toBe(0.9);
  });

  it('fails without touching the head when the database cannot be reached', async () => {
    let unreachable: Repository;
    let release: () => Promise<unknown>;
    if (driver === 'pglite') {
      const closed = await createDb({ dataDir: 'memory://' });
      await closed.close();
      unreachable = createRepository(closed.db);
      release = async () => undefined;
    } else {
      // the real server behind a proxy that refuses connections
      const url = new URL(DATABASE_URL!);
      const proxy = await tcpProxy(url.hostname, Number(url.port || 5432));
      await proxy.cut();
      url.port = String(proxy.port);
      const h = await createDb({ url: url.toString(), migrate: false, connectTimeoutSeconds: 2, maxConnections: 1 });
      unreachable = createRepository(h.db);
      release = () => Promise.all([h.close(), proxy.close()]);
    }
    try {
      const h = holder('v1');
      expect((await applyOverrides(h, unreachable)).status).toBe('failed');
      expect(h.head).toBe(bundleHead);
    } finally {
      await release();
    }
  });

  it('does not undo a threshold change made while it was reading the overrides', async () => {
    const h = holder('v1');
    const put = bundleHead.withThresholds({ en: 0.2 });
    const racing = { thresholdOverrides: async (v: string) => {
      const o = await repo.thresholdOverrides(v);
      h.setHead(put); // PUT /admin/thresholds lands while the sync reads
      return o;
    } };
    expect(await applyOverrides(h, racing)).toEqual({ status: 'raced', version: 'v1' });
    expect(h.head).toBe(put);
  });

  describe('per attribute', () => {
    const insultHead = bundleHead.withThresholds({ pooled: 0.3, en: null, de: 0.35 });
    /** A holder with toxicity and insult heads, as a Classifier of a bundle with attributes exposes them. */
    function attributeHolder(version: string) {
      const base = holder(version);
      let insult = insultHead;
      return Object.assign(base, {
        insultSwaps: 0,
        attributeNames: ['toxicity', 'insult'],
        attributeHead: (name: string) => (name === 'toxicity' ? base.head : name === 'insult' ? insult : undefined),
        bundleAttributeHead: (name: string) => (name === 'toxicity' ? bundleHead : name === 'insult' ? insultHead : undefined),
        setAttributeHead(name: string, h: typeof bundleHead) {
          if (name === 'toxicity') base.setHead(h);
          else {
            insult = h;
            this.insultSwaps++;
          }
        },
      });
    }
    const insultChange = (bundleVersion: string, language: string, newThreshold: number, removed = false): NewThresholdChangeInput => ({ ...change(bundleVersion, language, newThreshold, removed), attribute: 'insult' });

    it("replays each attribute's overrides onto that attribute's head only (another replica's change converges)", async () => {
      await repo.recordThresholdChanges([insultChange('va1', 'de', 0.9), insultChange('va1', 'pooled', 0.25)]);
      const a = attributeHolder('va1');
      const b = attributeHolder('va1'); // a second replica of the same bundle version
      const syncA = new ThresholdSync({ source: repo, current: () => a, intervalMs: 60_000 });
      const syncB = new ThresholdSync({ source: repo, current: () => b, intervalMs: 60_000 });
      expect(await syncA.apply(a)).toEqual({ status: 'changed', version: 'va1', overrides: {}, changed: ['insult:pooled', 'insult:de'], attributes: { insult: { de: 0.9, pooled: 0.25 } } });
      expect(a.attributeHead('insult')!.thresholds).toEqual({ pooled: 0.25, perLanguage: { de: 0.9 } });
      expect(a.head).toBe(bundleHead); // toxicity untouched: no swap
      expect(a.swaps).toBe(0);
      await syncB.apply(b);
      // replica A removes insult's German threshold (PUT /admin/thresholds records it); B's next sync converges
      await repo.recordThresholdChange(insultChange('va1', 'de', 0.25, true));
      expect(await syncB.sync()).toMatchObject({ status: 'changed', changed: ['insult:de'] });
      expect(b.attributeHead('insult')!.thresholds).toEqual({ pooled: 0.25, perLanguage: {} });
      expect(await syncB.sync()).toEqual({ status: 'unchanged', version: 'va1' });
      expect(b.insultSwaps).toBe(2);
      // a toxicity override of the same version moves toxicity's head, not insult's
      await repo.recordThresholdChange(change('va1', 'en', 0.8));
      expect(await syncB.sync()).toMatchObject({ status: 'changed', changed: ['en'] });
      expect(b.head.thresholds.perLanguage.en).toBe(0.8);
      expect(b.insultSwaps).toBe(2);
    });

    it("does not undo an attribute's threshold change made while it was reading", async () => {
      const h = attributeHolder('va1');
      const put = insultHead.withThresholds({ pooled: 0.05 });
      const racing = {
        thresholdOverrides: (v: string) => repo.thresholdOverrides(v),
        attributeOverrides: async (v: string) => {
          const o = await repo.attributeOverrides(v);
          h.setAttributeHead('insult', put);
          return o;
        },
      };
      expect(await applyOverrides(h, racing)).toEqual({ status: 'raced', version: 'va1' });
      expect(h.attributeHead('insult')).toBe(put);
    });
  });

  it('is idle before a bundle is loaded, and runs one sync at a time', async () => {
    let current: HeadHolder | null = null;
    const sync = new ThresholdSync({ source: repo, current: () => current, intervalMs: 60_000 });
    expect(await sync.sync()).toEqual({ status: 'idle' });
    current = holder('v1');
    const [a, b] = [sync.sync(), sync.sync()];
    expect(a).toBe(b);
    expect((await a).status).toBe('changed');
  });
});
