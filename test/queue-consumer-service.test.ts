/**
 * `toxscope consume` as a whole service (startService with the consumer, in this process), on its own private
 * nats-server (test/helpers/nats-server.ts: this file kills and restarts it, which it must never do to the shared
 * one) and a bundle with several attributes:
 *
 * - a queue request scores the attributes asked for, as /v1/classify does (same names, same default of every
 *   attribute, same refusal of an unknown one, which dead-letters the message), and the result carries them;
 * - the consumer lag gauge is refreshed by every fetch (its periodic refresh is set to an hour here);
 * - readiness (/readyz, /healthz, toxscope_ready, toxscope_nats_connected, toxscope_nats_consumer_exists) follows
 *   the NATS connection and the durable consumer: the server killed, back without JetStream (no consumer can
 *   exist), back with JetStream but without its old state (the consumer is created again and consumes).
 *
 * The database is a fresh Postgres database when DATABASE_URL is set, else the embedded PGlite.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startService, type RunningService } from '../src/main.js';
import { createLogger } from '../src/util/logger.js';
import { DATABASE_URL, freshPostgresDatabase, type FreshDatabase } from './helpers/db.js';
import { natsServerInstalled, privateNatsServer, type PrivateNatsServer } from './helpers/nats-server.js';
import { trainAttributesBundle } from './helpers/serve-bundle.js';

const names = {
  stream: 'TOXSCOPE_SVC_TEST',
  subject: 'svc-test.requests',
  results: 'svc-test.results',
  dead: 'svc-test.dead-letter',
  durable: 'svc-test',
};
const GERMAN = 'Du bist ein dummer Idiot und ein Versager, halt einfach die Klappe';
const BACKLOG = 40;

if (!natsServerInstalled) console.warn('nats-server is not installed: the queue service test (private NATS server) is skipped');
const root = mkdtempSync(join(tmpdir(), 'toxscope-queue-svc-'));
const logs: string[] = [];
let nats: PrivateNatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;
let db: FreshDatabase | undefined;
let svc: RunningService;

/** Every message published on a subject since the subscription, parsed. */
function collect(sub: Subscription): unknown[] {
  const got: unknown[] = [];
  void (async () => {
    for await (const m of sub) got.push(m.json());
  })();
  return got;
}
let results: any[];
let deadLetters: any[];

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${svc.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no ${name} in /metrics`);
  return Number(line.split(' ').pop());
}

const readyz = async () => {
  const res = await fetch(`${svc.url}/readyz`);
  return { status: res.status, body: (await res.json()) as any };
};

beforeAll(async () => {
  if (!natsServerInstalled) return;
  nats = await privateNatsServer();
  await nats.start();
  nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  jsm = await jetstreamManager(nc);
  results = collect(nc.subscribe(names.results));
  deadLetters = collect(nc.subscribe(names.dead));
  // a backlog before the consumer starts: the requests this file checks, behind BACKLOG plain ones
  await jsm.streams.add({ name: names.stream, subjects: [names.subject, names.results, names.dead] });
  const js = jetstream(nc);
  for (let i = 0; i < BACKLOG; i++) await js.publish(names.subject, JSON.stringify({ id: `plain-${i}`, text: `plain message ${i}`, language: 'en' }));
  await js.publish(names.subject, JSON.stringify({ id: 'all-attributes', text: GERMAN, language: 'de' }));
  await js.publish(names.subject, JSON.stringify({ id: 'insult-only', text: GERMAN, language: 'de', attributes: ['insult'] }));
  await js.publish(names.subject, JSON.stringify({ id: 'unknown-attribute', text: GERMAN, language: 'de', attributes: ['threat'] }));

  const bundleDir = join(root, 'bundle');
  await trainAttributesBundle(bundleDir, 'queue-svc', join(root, 'cache'));
  if (DATABASE_URL) db = await freshPostgresDatabase('toxscope_queue_svc');
  const config = loadConfig({
    env: {
      PORT: '0',
      HOST: '127.0.0.1',
      TOXSCOPE_BUNDLE: bundleDir,
      TOXSCOPE_DATA_DIR: join(root, 'data'),
      TOXSCOPE_THREADS: '1',
      TOXSCOPE_WINDOW_TOKENS: '64',
      TOXSCOPE_WINDOW_OVERLAP: '8',
      ...(db && { DATABASE_URL: db.url }),
      TOXSCOPE_NATS_URL: nats.url,
      TOXSCOPE_NATS_STREAM: names.stream,
      TOXSCOPE_NATS_SUBJECT: names.subject,
      TOXSCOPE_NATS_RESULTS_SUBJECT: names.results,
      TOXSCOPE_NATS_DEAD_LETTER_SUBJECT: names.dead,
      TOXSCOPE_NATS_DURABLE: names.durable,
      TOXSCOPE_NATS_MAX_INFLIGHT: '4',
    },
  });
  // the lag is read from the server every hour only: what the gauge shows between comes from the fetches
  svc = await startService(config, createLogger('info', (l) => logs.push(l)), { consume: true, lagIntervalMs: 3_600_000 });
  await svc.ready;
}, 300_000);

afterAll(async () => {
  await svc?.shutdown('test');
  await nc?.close();
  await nats?.dispose();
  await db?.drop().catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

describe.skipIf(!natsServerInstalled)('toxscope consume on the service core (private nats-server)', () => {
  it('refreshes the consumer lag from each fetch: the backlog drains and the gauge follows it to 0', async () => {
    await waitFor('the backlog classified', () => results.length >= BACKLOG + 2 && deadLetters.length >= 1, 120_000);
    const info = await jsm.consumers.info(names.stream, names.durable);
    expect(info.num_pending).toBe(0);
    // the only lag read from the server was at start, with the backlog waiting; the fetches since brought it to 0
    await waitFor('the lag gauge at 0', async () => (await metric('toxscope_nats_consumer_lag')) === 0, 30_000);
  });

  it('scores every attribute of the bundle by default, or those asked for, exactly as /v1/classify does', async () => {
    const byId = (id: string) => results.find((r) => r.id === id);
    const all = byId('all-attributes').results[0];
    const http = (await (await fetch(`${svc.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ texts: [GERMAN], language: 'de' }) })).json()) as any;
    const want = http.results[0];
    expect(Object.keys(all.attributes).sort()).toEqual(Object.keys(want.attributes).sort());
    expect(Object.keys(all.attributes)).toEqual(expect.arrayContaining(['toxicity', 'insult', 'identity_attack']));
    for (const [name, a] of Object.entries(want.attributes) as [string, any][]) {
      expect(all.attributes[name].score).toBeCloseTo(a.score, 6);
      expect(all.attributes[name]).toMatchObject({ toxic: a.toxic, threshold: a.threshold, thresholds: a.thresholds, span: a.span });
    }
    expect(all.attributes.toxicity).toMatchObject({ score: all.score, toxic: all.toxic, threshold: all.threshold });
    expect(all.id).toBe('q:all-attributes:0');

    // asked for insult: insult and toxicity (always scored), nothing else
    const only = byId('insult-only').results[0];
    expect(Object.keys(only.attributes).sort()).toEqual(['insult', 'toxicity']);
    expect(only.attributes.insult.score).toBeCloseTo(want.attributes.insult.score, 6);
  });

  it('dead-letters a request for an attribute the bundle does not score, naming those it does', async () => {
    const letters = deadLetters.filter((d) => JSON.parse(d.data).id === 'unknown-attribute');
    expect(letters).toHaveLength(1);
    expect(letters[0].error.kind).toBe('validation');
    expect(letters[0].error.message).toMatch(/unknown attribute threat: this bundle scores toxicity, .*identity_attack.*insult/);
    expect(results.find((r) => r.id === 'unknown-attribute')).toBeUndefined();
  });

  it('is ready only while connected to NATS with its durable consumer: server killed, back without JetStream, back without its state', async () => {
    const ok = await readyz();
    expect(ok.status).toBe(200);
    expect(ok.body.queue).toMatchObject({ connection: 'connected', consumer: 'present', stream: names.stream, durable: names.durable });
    expect(await metric('toxscope_ready')).toBe(1);
    expect(await metric('toxscope_nats_connected')).toBe(1);
    expect(await metric('toxscope_nats_consumer_exists')).toBe(1);

    // the server dies: not ready (reconnecting), still live (a restart would not bring NATS back)
    await nats.kill();
    const lost = await waitFor('/readyz 503 after the server died', async () => {
      const r = await readyz();
      return r.status === 503 ? r : undefined;
    });
    expect(lost.body.error.message).toMatch(/^not consuming: the NATS connection is lost, reconnecting/);
    expect(await metric('toxscope_ready')).toBe(0);
    expect(await metric('toxscope_nats_connected')).toBe(0);
    const live = await fetch(`${svc.url}/healthz`);
    expect(live.status).toBe(200);
    expect(((await live.json()) as any).queue.connection).toBe('reconnecting');

    // back on the same port but without JetStream: connected, and no consumer can exist there
    await nats.start({ jetstream: false });
    const noConsumer = await waitFor('/readyz to say the consumer is missing', async () => {
      const r = await readyz();
      return r.status === 503 && /does not exist/.test(r.body.error.message) ? r : undefined;
    });
    expect(noConsumer.body.error.message).toMatch(new RegExp(`not consuming: the durable consumer ${names.durable} of stream ${names.stream} does not exist`));
    expect(await metric('toxscope_nats_connected')).toBe(1);
    expect(await metric('toxscope_nats_consumer_exists')).toBe(0);
    expect(await metric('toxscope_ready')).toBe(0);

    // back with JetStream but a new, empty store: the stream and the durable consumer are created again
    await nats.kill();
    await nats.start({ freshStore: true });
    await waitFor('/readyz 200 again', async () => (await readyz()).status === 200 || undefined);
    expect(await metric('toxscope_ready')).toBe(1);
    expect(await metric('toxscope_nats_consumer_exists')).toBe(1);
    expect((await jsm.consumers.info(names.stream, names.durable)).config.durable_name).toBe(names.durable);
    expect(logs.some((l) => /durable consumer created again/.test(l))).toBe(true);

    // and it consumes
    await waitFor('the test connection back', () => !nc.isClosed() && nc.info !== undefined);
    await jetstream(nc).publish(names.subject, JSON.stringify({ id: 'after-recovery', text: 'hello again', language: 'en' }));
    const after = await waitFor('the result of a message published after the recovery', () => results.find((r) => r.id === 'after-recovery'));
    expect(after.results[0].id).toBe('q:after-recovery:0');
  });
});
