/**
 * The composition root end to end: a bundle trained here (golden tiny checkpoint + SAELens SAE, fixture
 * texts) served by startService on 127.0.0.1 with the embedded PGlite in the data directory, then a
 * graceful shutdown and a restart that still knows the earlier predictions.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/util/logger.js';
import { startService, type RunningService } from '../src/main.js';
import { trainServeBundle } from './helpers/serve-bundle.js';
import { fullRangeInt8IsExact } from '../src/engine/int8-weight-form.js';
import { tokenDigest } from '../src/engine/quarantine.js';
import { TextWorker } from '../src/engine/text-worker.js';
import { QUARANTINE_FILE } from '../src/service/text-quarantine.js';

const root = mkdtempSync(join(tmpdir(), 'toxscope-serve-'));
const bundleDir = join(root, 'bundle');
const token = 'serve-test-admin-token-123456';
const config = (extra: Record<string, string> = {}) =>
  loadConfig({
    env: { PORT: '0', HOST: '127.0.0.1', TOXSCOPE_BUNDLE: bundleDir, TOXSCOPE_DATA_DIR: join(root, 'data'), TOXSCOPE_ADMIN_TOKEN: token, TOXSCOPE_THREADS: '1', ...extra },
  });
const quiet = createLogger('silent');

beforeAll(async () => {
  await trainServeBundle(bundleDir, 'serve-test', join(root, 'cache'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const postJson = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

describe('startService', () => {
  let svc: RunningService;
  let id: string;

  it('serves the configured bundle once warm, with the bundle window settings', async () => {
    svc = await startService(config(), quiet);
    await svc.ready;
    const ready = await fetch(`${svc.url}/readyz`);
    expect(ready.status).toBe(200);
    const info = (await (await fetch(`${svc.url}/info`)).json()) as any;
    expect(info).toMatchObject({ bundle: { name: 'serve-test' }, layer: 2, k: 16, limits: { window_tokens: 64, window_overlap: 8 }, execution_provider: 'cpu', weight_dtype: 'f32' });
    const res = await postJson(`${svc.url}/v1/classify`, { texts: ['you are an idiot', 'Guten Morgen zusammen'] });
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    expect(body.results[1].language.code).toBe('de');
    expect(info.synthetic_backbone).toBe(false); // trained by trainBundle without the demo flag
    expect(body.synthetic_backbone).toBeUndefined();
    expect(res.headers.get('x-toxscope-synthetic-backbone')).toBeNull();
    id = body.results[0].id;
    const fb = await postJson(`${svc.url}/v1/feedback`, { items: [{ id, label: 1 }] });
    expect(fb.status).toBe(202);
    expect(((await fb.json()) as any).items[0].status).toBe('stored');
    const metrics = await (await fetch(`${svc.url}/metrics`)).text();
    expect(metrics).toMatch(/toxscope_process_resident_memory_bytes \d+/);
    expect(metrics).toMatch(/toxscope_predictions_total\{language="en"/);
    expect(metrics).toMatch(/^toxscope_ready 1$/m); // what /readyz says, for alerting without a prober
  });

  it('shuts down gracefully: answers what it accepted, then stops listening', async () => {
    // long enough to be in the engine when the shutdown starts (several windows on one thread)
    const inflight = postJson(`${svc.url}/v1/classify`, { texts: Array.from({ length: 16 }, (_, i) => `in flight ${i} `.repeat(40)) });
    await new Promise((r) => setTimeout(r, 50));
    const stopped = svc.shutdown('test');
    expect((await inflight).status).toBe(200);
    await stopped;
    await expect(fetch(`${svc.url}/healthz`)).rejects.toThrow();
  });

  it('keeps predictions and feedback across a restart on the same data directory', async () => {
    const again = await startService(config(), quiet);
    try {
      await again.ready;
      const fb = await postJson(`${again.url}/v1/feedback`, { items: [{ id, label: 0 }] });
      expect(((await fb.json()) as any).items[0]).toMatchObject({ id, status: 'updated' });
      const audit = await fetch(`${again.url}/admin/audit`, { headers: { authorization: `Bearer ${token}` } });
      expect(audit.status).toBe(200);
    } finally {
      await again.shutdown('test');
    }
  });

  it('serves an f32-trained bundle at int8 when TOXSCOPE_PRECISION=int8, and /info says so', async () => {
    const int8 = await startService(config({ TOXSCOPE_PRECISION: 'int8', TOXSCOPE_DATA_DIR: join(root, 'data-int8') }), quiet);
    try {
      await int8.ready;
      const info = (await (await fetch(`${int8.url}/info`)).json()) as any;
      expect(info.weight_dtype).toBe('int8');
      expect(info.precision).toMatchObject({ serving: 'int8', bundle_trained_on: 'f32' });
      expect(info.precision.note).toMatch(/trained on f32 features and is served at int8/);
      // how this machine stores int8 weights: uint8 where its u8 x s8 kernel saturates (AVX2 without VNNI)
      expect(info.precision.int8_weights).toBe((await fullRangeInt8IsExact()) ? 's8' : 'u8');
      const res = await postJson(`${int8.url}/v1/classify`, { texts: ['you are an idiot'] });
      expect(res.status).toBe(200);
    } finally {
      await int8.shutdown('test');
    }
  });

  it('refuses a text its data directory\'s engine quarantine names (a crash loop ends across restarts), and /readyz counts it', async () => {
    const dataDir = join(root, 'data-quarantine');
    const first = await startService(config({ TOXSCOPE_DATA_DIR: dataDir }), quiet);
    let modelDir: string;
    try {
      await first.ready;
      modelDir = ((await (await fetch(`${first.url}/info`, { headers: { authorization: `Bearer ${token}` } })).json()) as any).model.path;
    } finally {
      await first.shutdown('test');
    }
    // what the service wrote had this text been in flight at two engine deaths: its token ids' digest, twice
    const poison = 'a text that crashed the engine twice';
    const text = await TextWorker.open({ modelDir });
    const [{ ids }] = await text.prepare({ texts: [poison], hints: [null], maxTokens: 10_000 });
    await text.close();
    writeFileSync(join(dataDir, QUARANTINE_FILE), JSON.stringify({ format: 'toxscope-engine-quarantine/1', texts: [{ sha256: tokenDigest(ids), deaths: 2, last: new Date().toISOString() }] }));

    const again = await startService(config({ TOXSCOPE_DATA_DIR: dataDir }), quiet);
    try {
      await again.ready;
      const refused = await postJson(`${again.url}/v1/classify`, { texts: ['have a nice day', poison] });
      expect(refused.status).toBe(422);
      expect(((await refused.json()) as any).error).toMatchObject({ kind: 'quarantined', message: expect.stringMatching(/^texts\[1\] crashed the engine repeatedly/) });
      expect((await postJson(`${again.url}/v1/classify`, { texts: ['have a nice day'] })).status).toBe(200);
      expect(((await (await fetch(`${again.url}/readyz`)).json()) as any).engine_quarantine).toEqual({ quarantined: 1, suspects: 0 });
      expect(await (await fetch(`${again.url}/metrics`)).text()).toMatch(/^toxscope_engine_quarantine_refusals_total 1$/m);
    } finally {
      await again.shutdown('test');
    }
  });
});
