/**
 * A text that crashes the engine must not crash it forever. Every text in the engine's batch when its worker thread
 * dies is a suspect; a suspect is retried, alone in its batches, and a text present at TOXSCOPE_QUARANTINE_DEATHS (2)
 * deaths is quarantined: refused with a 4xx in each API's own error shape without reaching the engine, in this
 * process and the next ones (the quarantine is kept in the data directory).
 *
 * The engine is the real one on its worker thread; the poison is a text whose batch makes the test terminate that
 * thread while it is scored (test/helpers/crashing-engine.ts), as test/engine-worker-death.test.ts kills it.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { tokenDigest } from '../src/engine/quarantine.js';
import { createMetrics, type Metrics } from '../src/metrics/metrics.js';
import { QUARANTINE_FILE, TextQuarantine } from '../src/service/text-quarantine.js';
import type { PoisonTally } from './helpers/crashing-engine.js';
import { buildTestApp, post, request, type TestApp } from './helpers/app.js';

const POISON = 'this exact sentence kills the engine worker';
const INNOCENT = 'have a nice day, see you tomorrow';
const OTHER = 'the weather is lovely this morning';

/** A service whose engine dies on POISON, restarted in-process, with its quarantine in `dataDir` (and its own metrics). */
async function poisonedService(dataDir: string, tally: PoisonTally, { restarts = 5 } = {}): Promise<{ t: TestApp; quarantine: TextQuarantine; metrics: Metrics }> {
  const metrics = createMetrics({ processDefaults: false });
  const quarantine = new TextQuarantine({ deaths: 2, path: join(dataDir, QUARANTINE_FILE), metrics });
  const t = await buildTestApp({
    env: { TOXSCOPE_DATA_DIR: dataDir },
    ...(restarts > 0 && { restart: { attempts: restarts, backoffMs: 10, checkMs: 20 } }),
    engine: { quarantine, crashOn: { text: POISON, tally } },
    deps: { quarantine },
  });
  return { t, quarantine, metrics };
}

const serving = async (t: TestApp) =>
  vi.waitFor(async () => expect((await request(t.app, '/readyz')).status).toBe(200), { timeout: 120_000, interval: 50 });

describe('a text that crashes the engine, in one process', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'toxscope-quarantine-'));
  const tally: PoisonTally = { batches: 0 };
  let t: TestApp;
  let quarantine: TextQuarantine;
  let metrics: Metrics;
  beforeAll(async () => {
    ({ t, quarantine, metrics } = await poisonedService(dataDir, tally));
  }, 240_000);
  afterAll(async () => {
    await t?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('makes every text of the dying batch a suspect at the first death, and answers a retryable 503', { timeout: 240_000 }, async () => {
    const first = await post(t.app, '/v1/classify', { texts: [POISON, INNOCENT] });
    expect(first.status).toBe(503);
    expect(first.headers.get('retry-after')).toMatch(/^\d+$/);
    expect((await first.json()).error.kind).toBe('unavailable');
    expect(tally.batches).toBe(1);
    expect(quarantine.counts()).toEqual({ quarantined: 0, suspects: 2 });
    await serving(t);
  });

  it('retries a text present at one death, and serves it', { timeout: 240_000 }, async () => {
    const again = await post(t.app, '/v1/classify', { texts: [POISON, INNOCENT] });
    expect(again.status).toBe(503); // the poison, alone in its batch, killed the engine a second time
    expect(tally.batches).toBe(2);
    await serving(t);
    // the innocent text shared the poison's batch at the first death only: it is served
    const innocent = await post(t.app, '/v1/classify', { texts: [INNOCENT] });
    expect(innocent.status).toBe(200);
    expect((await innocent.json()).results).toHaveLength(1);
    expect(quarantine.counts()).toEqual({ quarantined: 1, suspects: 0 }); // scored to the end: no longer a suspect
  });

  it('refuses a text present at two deaths with a 4xx in each API shape, without reaching the engine', async () => {
    const native = await post(t.app, '/v1/classify', { texts: [OTHER, POISON] });
    expect(native.status).toBe(422);
    expect((await native.json()).error).toEqual({
      kind: 'quarantined',
      message: 'texts[1] crashed the engine repeatedly (it was being scored at 2 deaths of the engine): it is quarantined and will not be retried',
      code: 422,
      status: 'INVALID_ARGUMENT',
    });

    const openai = await post(t.app, '/v1/moderations', { input: POISON });
    expect(openai.status).toBe(400);
    expect((await openai.json()).error).toEqual({
      message: 'input crashed the engine repeatedly (it was being scored at 2 deaths of the engine): it is quarantined and will not be retried',
      type: 'invalid_request_error',
      param: 'input',
      code: 'input_quarantined',
    });

    const perspective = await post(t.app, '/v1alpha1/comments:analyze', { comment: { text: POISON }, requestedAttributes: { TOXICITY: {} } });
    expect(perspective.status).toBe(400);
    expect((await perspective.json()).error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT', message: expect.stringMatching(/crashed the engine repeatedly.*will not be retried/) });

    expect(tally.batches).toBe(2); // none of the three reached the engine
    expect(await metrics.registry.getSingleMetricAsString('toxscope_engine_quarantine_refusals_total')).toMatch(/refusals_total 3$/m);
    expect(await metrics.registry.getSingleMetricAsString('toxscope_engine_quarantine_texts')).toMatch(/state="quarantined"} 1$/m);
    const ready = await request(t.app, '/readyz');
    expect(ready.status).toBe(200);
    expect((await ready.json()).engine_quarantine).toEqual({ quarantined: 1, suspects: 0 });
  });

  it('keeps serving every other request after the poison text is quarantined', async () => {
    const others = await Promise.all([post(t.app, '/v1/classify', { texts: [INNOCENT, OTHER] }), post(t.app, '/v1/moderations', { input: OTHER })]);
    expect(others.map((r) => r.status)).toEqual([200, 200]);
    expect((await request(t.app, '/healthz')).status).toBe(200);
  });

  it('keeps digests of token ids in its file, never the text', () => {
    const file = readFileSync(join(dataDir, QUARANTINE_FILE), 'utf8');
    expect(file).not.toContain('kills the engine');
    const texts = JSON.parse(file).texts as { deaths: number }[];
    for (const t of texts) expect(t).toEqual({ sha256: expect.stringMatching(/^[0-9a-f]{64}$/), deaths: expect.any(Number), last: expect.any(String) });
    // the poison at two deaths (a cleared suspect leaves the file at the next death only)
    expect(texts.filter((t) => t.deaths === 2)).toHaveLength(1);
  });
});

describe('a text that crashes the engine, across processes', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'toxscope-quarantine-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('ends a crash loop: without in-process restarts, a text at one death in each of two processes is refused by the third', { timeout: 240_000 }, async () => {
    const tally: PoisonTally = { batches: 0 };
    for (const life of [1, 2]) {
      const { t } = await poisonedService(dataDir, tally, { restarts: 0 });
      try {
        expect((await post(t.app, '/v1/classify', { texts: [POISON] })).status).toBe(503);
        expect((await request(t.app, '/healthz')).status).toBe(503); // the orchestrator would restart the process
        expect(tally.batches).toBe(life);
      } finally {
        await t.close();
      }
    }
    const { t, quarantine } = await poisonedService(dataDir, tally, { restarts: 0 });
    try {
      expect(quarantine.counts()).toEqual({ quarantined: 1, suspects: 0 });
      const refused = await post(t.app, '/v1/classify', { texts: [POISON] });
      expect(refused.status).toBe(422);
      expect((await refused.json()).error.kind).toBe('quarantined');
      expect(tally.batches).toBe(2);
      expect((await post(t.app, '/v1/classify', { texts: [INNOCENT] })).status).toBe(200);
      expect((await request(t.app, '/healthz')).status).toBe(200);
    } finally {
      await t.close();
    }
  });
});

describe('the quarantine file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'toxscope-quarantine-file-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const digest = (i: number) => tokenDigest([i]);

  it('remembers at most maxEntries texts, forgetting those blamed least recently, in memory and on disk', () => {
    const path = join(dir, 'bounded.json');
    const q = new TextQuarantine({ deaths: 2, path, maxEntries: 3 });
    q.died([digest(1), digest(2)]);
    q.died([digest(1)]); // quarantined, and blamed most recently
    q.died([digest(3), digest(4)]);
    expect([1, 2, 3, 4].map((i) => q.quarantinedAt(digest(i)) > 0 || q.isSuspect(digest(i)))).toEqual([true, false, true, true]);
    const reopened = new TextQuarantine({ deaths: 2, path, maxEntries: 3 });
    expect(reopened.quarantinedAt(digest(1))).toBe(2);
    expect(reopened.counts()).toEqual({ quarantined: 1, suspects: 2 });
  });

  it('starts empty, and says so, from a file it cannot read', () => {
    const path = join(dir, 'torn.json');
    writeFileSync(path, '{"format": "toxscope-engine-quarantine/1", "texts": [');
    const warnings: string[] = [];
    const q = new TextQuarantine({ deaths: 2, path, log: { debug() {}, info() {}, warn: (m) => warnings.push(m), error() {} } });
    expect(q.counts()).toEqual({ quarantined: 0, suspects: 0 });
    expect(warnings).toEqual(['the engine quarantine file is not readable: starting without it']);
  });

  it('quarantines nothing with deaths 0 (TOXSCOPE_QUARANTINE_DEATHS=0)', () => {
    const q = new TextQuarantine({ deaths: 0 });
    q.died([digest(1)]);
    q.died([digest(1)]);
    expect(q.quarantinedAt(digest(1))).toBe(0);
    expect(q.isSuspect(digest(1))).toBe(false);
  });
});
