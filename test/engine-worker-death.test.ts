/**
 * Issue #10: the engine's worker thread can die. Without in-process restarts (TOXSCOPE_ENGINE_RESTARTS=0),
 * readiness and liveness say so (503), so that the orchestrator stops routing to the process and restarts it.
 * With them (the default), the host reloads the bundle with a fresh engine after a backoff: readiness is 503
 * while it does, liveness stays 200, requests in flight at the death get a retryable 503 (never a hang), and
 * after the attempts run out liveness fails. The worker is really terminated in every test.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Worker } from 'node:worker_threads';
import type { EngineRestartEvent, LoadedBundle } from '../src/service/classifier-host.js';
import { buildTestApp, loadTinyBundle, post, request, type TestApp } from './helpers/app.js';

/** The real worker thread of the serving engine (WorkerEngine keeps it private), terminated. */
async function killEngineWorker(t: TestApp): Promise<void> {
  const worker = (t.host.current().classifier as unknown as { parts: { engine: { worker: Worker } } }).parts.engine.worker;
  const exited = new Promise((r) => worker.once('exit', r));
  await worker.terminate();
  await exited;
}

describe('a dead engine worker, without in-process restarts', () => {
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

    await killEngineWorker(t);

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

describe('a dead engine worker, restarted in-process', () => {
  it('answers requests in flight with a retryable 503, is unready (but alive) while it restarts, then serves again', { timeout: 240_000 }, async () => {
    const events: EngineRestartEvent[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const reloaded: string[] = [];
    const t: TestApp = await buildTestApp({
      restart: {
        attempts: 3,
        backoffMs: 10,
        checkMs: 20,
        onEvent: (e) => events.push(e),
        reload: async (dead: LoadedBundle) => {
          reloaded.push(dead.source!);
          await gate; // held so that the test can look at the service while the restart is under way
          return loadTinyBundle(dead.source!, t.config, t.metrics);
        },
      },
    });
    try {
      const dead = t.host.current();
      // a request in flight when the worker dies: 50 texts, so that it is still being scored
      const inFlight = post(t.app, '/v1/classify', { texts: Array.from({ length: 50 }, (_, i) => `text number ${i} of a batch that is being classified`) });
      await killEngineWorker(t);
      const answer = await inFlight;
      expect(answer.status).toBe(503);
      expect(answer.headers.get('retry-after')).toMatch(/^\d+$/);
      expect((await answer.json()).error).toMatchObject({ kind: 'unavailable', message: expect.stringMatching(/engine worker exited/) });

      // noticed without any request (the idle check), restarting: unready, alive
      await vi.waitFor(() => expect(events.map((e) => e.type)).toContain('died'), { timeout: 10_000, interval: 10 });
      const ready = await request(t.app, '/readyz');
      expect(ready.status).toBe(503);
      expect((await ready.json()).error.message).toMatch(/engine of bundle tiny-v1 died \(the engine worker exited.*\): restarting it \(attempt 1 of 3\)/);
      expect((await request(t.app, '/healthz')).status).toBe(200);
      const meanwhile = await post(t.app, '/v1/classify', { texts: ['hello'] });
      expect(meanwhile.status).toBe(503);
      expect((await meanwhile.json()).error.kind).toBe('unavailable');

      release();
      await vi.waitFor(async () => expect((await request(t.app, '/readyz')).status).toBe(200), { timeout: 120_000, interval: 50 });
      expect(t.host.current()).not.toBe(dead);
      expect(reloaded).toEqual([dead.source]);
      const again = await post(t.app, '/v1/classify', { texts: ['hello'] });
      expect(again.status).toBe(200);
      expect((await again.json()).results).toHaveLength(1);
      expect(events.map((e) => e.type)).toEqual(['died', 'restarted']);
      expect((await request(t.app, '/healthz')).status).toBe(200);
    } finally {
      release();
      await t.close();
    }
  });

  it('gives up after the attempts run out: then liveness fails too, so that the process is restarted', { timeout: 240_000 }, async () => {
    const events: EngineRestartEvent[] = [];
    const t = await buildTestApp({
      restart: {
        attempts: 2,
        backoffMs: 5,
        checkMs: 20,
        onEvent: (e) => events.push(e),
        reload: async (dead) => {
          throw new Error(`${dead.info.version}: the model directory is gone`);
        },
      },
    });
    try {
      await killEngineWorker(t);
      await vi.waitFor(() => expect(events.map((e) => e.type)).toContain('gave_up'), { timeout: 30_000, interval: 10 });
      expect(events.map((e) => e.type)).toEqual(['died', 'failed', 'died', 'failed', 'gave_up']);
      const live = await request(t.app, '/healthz');
      expect(live.status).toBe(503);
      expect((await live.json()).error.message).toMatch(/engine of bundle tiny-v1 is down: the engine worker exited .*; 2 restarts in a row failed/);
      expect((await request(t.app, '/readyz')).status).toBe(503);
    } finally {
      await t.close();
    }
  });
});
