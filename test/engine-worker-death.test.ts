/**
 * Issue #10 item 5: when the engine's worker thread dies, readiness and liveness say so (503), so that the
 * orchestrator stops routing to the process and restarts it, instead of /readyz and /healthz answering 200
 * while every classification fails. The worker is really terminated here.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Worker } from 'node:worker_threads';
import { buildTestApp, post, request, type TestApp } from './helpers/app.js';

describe('a dead engine worker', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await buildTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('turns readiness and liveness to 503, naming the cause', async () => {
    expect((await request(t.app, '/readyz')).status).toBe(200);
    expect((await request(t.app, '/healthz')).status).toBe(200);

    // the real worker thread of the serving engine (WorkerEngine keeps it private)
    const worker = (t.host.current().classifier as unknown as { parts: { engine: { worker: Worker } } }).parts.engine.worker;
    const exited = new Promise((r) => worker.once('exit', r));
    await worker.terminate();
    await exited;

    const ready = await request(t.app, '/readyz');
    expect(ready.status).toBe(503);
    expect((await ready.json()).error.message).toMatch(/engine of bundle tiny-v1 is down: the engine worker exited/);
    const live = await request(t.app, '/healthz');
    expect(live.status).toBe(503);
    expect((await live.json()).error.message).toMatch(/engine worker exited/);
    const classify = await post(t.app, '/v1/classify', { texts: ['hello'] });
    expect(classify.status).toBe(503);
    expect((await classify.json()).error.kind).toBe('unavailable');
  });
});
