/**
 * The queue consumer and texts that crash the engine: a message whose text kills the engine's worker thread is
 * redelivered after each death (the engine restarts in-process; nothing is fetched meanwhile, so a restart spends no
 * try), and once the text is quarantined (two deaths) the next delivery is dead-lettered at once with kind
 * `quarantined`, before its tries run out (TOXSCOPE_NATS_MAX_DELIVER 5); a later message with the same text is
 * dead-lettered at its first delivery, without reaching the engine; other messages are classified meanwhile. Real
 * engine, real deaths (test/helpers/crashing-engine.ts), a private nats-server, the consumer on the service core
 * (src/queue/core.ts) with the real write queue on PGlite.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createRepository } from '../src/db/repository.js';
import { WriteQueue } from '../src/db/write-queue.js';
import { QueueConsumer } from '../src/queue/consumer.js';
import { queueCore } from '../src/queue/core.js';
import { TextQuarantine } from '../src/service/text-quarantine.js';
import { buildTestApp, type TestApp } from './helpers/app.js';
import type { PoisonTally } from './helpers/crashing-engine.js';
import { openTestDb, type TestDb } from './helpers/db.js';
import { natsServerInstalled, privateNatsServer, type PrivateNatsServer } from './helpers/nats-server.js';

const POISON = 'this exact sentence kills the engine worker';
const names = { stream: 'TOXSCOPE_QUARANTINE', subject: 'quarantine.requests', results: 'quarantine.results', dead: 'quarantine.dead-letter', durable: 'quarantine' };

if (!natsServerInstalled) console.warn('nats-server is not installed: the queue quarantine test is skipped');

describe.skipIf(!natsServerInstalled)('the queue consumer and a text that crashes the engine', () => {
  const dir = mkdtempSync(join(tmpdir(), 'toxscope-queue-quarantine-'));
  const tally: PoisonTally = { batches: 0 };
  const results: { id: string }[] = [];
  const deadLetters: { error: { kind: string; message: string }; deliveries: number; data: string }[] = [];
  let nats: PrivateNatsServer;
  let nc: NatsConnection;
  let db: TestDb;
  let writes: WriteQueue;
  let t: TestApp;
  let consumer: QueueConsumer;

  beforeAll(async () => {
    nats = await privateNatsServer();
    await nats.start();
    nc = await connect({ servers: nats.url });
    const collect = <T>(subject: string, into: T[]) => void (async () => {
      for await (const m of nc.subscribe(subject)) into.push(m.json<T>());
    })();
    collect(names.results, results);
    collect(names.dead, deadLetters);
    db = await openTestDb('pglite');
    writes = new WriteQueue({ repo: createRepository(db.handle.db), journalDir: join(dir, 'journal'), flushDelayMs: 1 });
    const quarantine = new TextQuarantine({ deaths: 2, path: join(dir, 'engine-quarantine.json') });
    t = await buildTestApp({
      env: {
        TOXSCOPE_NATS_URL: nats.url,
        TOXSCOPE_NATS_STREAM: names.stream,
        TOXSCOPE_NATS_SUBJECT: names.subject,
        TOXSCOPE_NATS_RESULTS_SUBJECT: names.results,
        TOXSCOPE_NATS_DEAD_LETTER_SUBJECT: names.dead,
        TOXSCOPE_NATS_DURABLE: names.durable,
        TOXSCOPE_NATS_ACK_WAIT_MS: '5000',
      },
      restart: { attempts: 5, backoffMs: 10, checkMs: 20 },
      engine: { quarantine, crashOn: { text: POISON, tally } },
      deps: { predictions: writes, quarantine },
    });
    consumer = new QueueConsumer(t.config.queue, queueCore(t.deps));
    await consumer.start();
  }, 300_000);

  afterAll(async () => {
    await consumer?.stop();
    await t?.close();
    await writes?.close();
    await db?.dispose();
    await nc?.close();
    await nats?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('redelivers a message whose text killed the engine once, and dead-letters it as quarantined after the second death', { timeout: 120_000 }, async () => {
    const js = jetstream(nc);
    await js.publish(names.subject, JSON.stringify({ id: 'poison-1', text: POISON, language: 'en' }));
    await vi.waitFor(() => expect(deadLetters).toHaveLength(1), { timeout: 60_000, interval: 50 });
    expect(deadLetters[0].error).toEqual({ kind: 'quarantined', message: expect.stringMatching(/^texts\[0\] crashed the engine repeatedly .*will not be retried$/) });
    // two deliveries died with the engine, the third was refused: not the five tries of TOXSCOPE_NATS_MAX_DELIVER
    // (nothing is fetched while the engine restarts, so no try is spent on a restart)
    expect(deadLetters[0].deliveries).toBe(3);
    expect(tally.batches).toBe(2);
    expect(consumer.stats.retries).toBe(2);
  });

  it('dead-letters another message with the same text at its first delivery, and classifies the others', { timeout: 120_000 }, async () => {
    const js = jetstream(nc);
    await js.publish(names.subject, JSON.stringify({ id: 'poison-2', texts: ['have a nice day', POISON] }));
    await js.publish(names.subject, JSON.stringify({ id: 'plain', text: 'have a nice day', language: 'en' }));
    await vi.waitFor(() => expect(deadLetters).toHaveLength(2), { timeout: 60_000, interval: 50 });
    await vi.waitFor(() => expect(results.map((r) => r.id)).toEqual(['plain']), { timeout: 60_000, interval: 50 });
    expect(deadLetters[1]).toMatchObject({ error: { kind: 'quarantined', message: expect.stringMatching(/^texts\[1\] crashed the engine repeatedly/) }, deliveries: 1 });
    expect(JSON.parse(deadLetters[1].data)).toMatchObject({ id: 'poison-2' });
    expect(tally.batches).toBe(2);
  });
});
