/**
 * Poison messages that take their replica down never loop forever and reach the dead-letter subject exactly
 * once, with the reason. Real `toxscope consume` processes on the real NATS server (stream, subjects and durable
 * unique to this run).
 *
 * The replica holds the message for as long as the test needs: its database is unreachable, so the message's
 * rows cannot be written and it is not acknowledged (src/queue/core.ts waits for the write). Each replica that
 * holds it is killed with SIGKILL, as a message that crashes its process (out of memory, a native fault) would
 * have it. With TOXSCOPE_NATS_MAX_DELIVER=2 the durable consumer's max_deliver is 3: two tries die, the third
 * delivery is dead-lettered without being processed.
 *
 * The second case is the fallback: a replica died holding even that last delivery (here: the test took every
 * delivery and never answered), so JetStream gives up on the message and announces it with its MAX_DELIVERIES
 * advisory; a replica consumes the advisory and dead-letters the message, read back from the stream.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/goldens.js';
import { natsAvailable, NATS_URL } from './helpers/nats.js';
import { trainServeBundle } from './helpers/serve-bundle.js';

const run = randomBytes(4).toString('hex');
const namesFor = (tag: string) => ({
  stream: `TOXSCOPE_POISON_${tag}_${run}`,
  subject: `toxscope-poison-${tag}-${run}.requests`,
  results: `toxscope-poison-${tag}-${run}.results`,
  dead: `toxscope-poison-${tag}-${run}.dead-letter`,
  durable: `poison-${tag}-${run}`,
});
type Names = ReturnType<typeof namesFor>;
const ACK_WAIT_MS = 1000;

const root = mkdtempSync(join(tmpdir(), 'toxscope-poison-'));
const bundleDir = join(root, 'bundle');
const procs: ChildProcess[] = [];
const streams: string[] = [];
const enabled = await natsAvailable();
let nc: NatsConnection;
let jsm: JetStreamManager;
/** a Postgres URL nothing answers on: rows wait in the journal, messages stay unacknowledged */
let deadDatabaseUrl: string;

async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

beforeAll(async () => {
  if (!enabled) return;
  nc = await connect({ servers: NATS_URL });
  jsm = await jetstreamManager(nc);
  deadDatabaseUrl = `postgres://postgres@127.0.0.1:${await closedPort()}/nowhere`;
  await trainServeBundle(bundleDir, 'poison-test', join(root, 'cache'));
}, 180_000);

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  if (enabled) {
    for (const s of streams) await jsm.streams.delete(s).catch(() => undefined);
    await nc?.close();
  }
  rmSync(root, { recursive: true, force: true });
});

interface Replica {
  proc: ChildProcess;
  url: Promise<string>;
  output: () => string;
  kill9(): Promise<void>;
}

function startReplica(names: Names, name: string, maxDeliver: number): Replica {
  const proc = spawn(process.execPath, ['bin/toxscope.js', 'consume'], {
    cwd: repoRoot,
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      TOXSCOPE_BUNDLE: bundleDir,
      TOXSCOPE_DATA_DIR: join(root, `data-${name}`),
      DATABASE_URL: deadDatabaseUrl,
      TOXSCOPE_THREADS: '1',
      TOXSCOPE_LOG_LEVEL: 'info',
      TOXSCOPE_NATS_URL: NATS_URL,
      TOXSCOPE_NATS_STREAM: names.stream,
      TOXSCOPE_NATS_SUBJECT: names.subject,
      TOXSCOPE_NATS_RESULTS_SUBJECT: names.results,
      TOXSCOPE_NATS_DEAD_LETTER_SUBJECT: names.dead,
      TOXSCOPE_NATS_DURABLE: names.durable,
      TOXSCOPE_NATS_ACK_WAIT_MS: String(ACK_WAIT_MS),
      TOXSCOPE_NATS_MAX_DELIVER: String(maxDeliver),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.push(proc);
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise((r) => proc.once('exit', r));
  const url = (async () => {
    for (let i = 0; i < 1800; i++) {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) return m[1];
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`replica ${name} did not start:\n${out}`);
  })();
  return {
    proc,
    url,
    output: () => out,
    async kill9() {
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Messages the stream keeps on one subject. */
async function countOn(names: Names, subject: string): Promise<number> {
  const info = await jsm.streams.info(names.stream, { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
}

async function deadLettersOf(names: Names): Promise<any[]> {
  const out: any[] = [];
  const n = await countOn(names, names.dead);
  const info = await jsm.streams.info(names.stream);
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && out.length < n; seq++) {
    const m = await jsm.streams.getMessage(names.stream, { seq }).catch(() => null);
    if (m?.subject === names.dead) out.push({ ...(m.json() as object), header: m.header.get('Toxscope-Error') });
  }
  return out;
}

async function counter(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

async function createStream(names: Names): Promise<void> {
  await jsm.streams.add({ name: names.stream, subjects: [names.subject, names.results, names.dead], duplicate_window: 600_000_000_000 });
  streams.push(names.stream);
}

describe.skipIf(!enabled)('poison messages (a message whose every delivery ends with its replica dead)', () => {
  it('dead-letters the message once, at the delivery after its last try, after each replica holding it was killed', async () => {
    const names = namesFor('loop');
    await createStream(names);
    const poison = JSON.stringify({ id: `poison-${run}`, text: 'this message takes its replica down, every time' });
    const { seq } = await jetstream(nc).publish(names.subject, poison);

    // tries 1 and 2: a replica fetches it, holds it (its rows cannot be written), and dies
    for (let attempt = 1; attempt <= 2; attempt++) {
      const replica = startReplica(names, `loop-${attempt}`, 2);
      await waitFor(`replica ${attempt} holding the message`, async () => {
        const info = await jsm.consumers.info(names.stream, names.durable).catch(() => null);
        return info !== null && info.delivered.consumer_seq === attempt && info.num_ack_pending === 1;
      });
      expect((await jsm.consumers.info(names.stream, names.durable)).config.max_deliver).toBe(3);
      await replica.kill9();
    }
    expect(await countOn(names, names.dead)).toBe(0);

    // delivery 3, once ack_wait has passed: not processed, dead-lettered with the reason
    const third = startReplica(names, 'loop-3', 2);
    await waitFor('the dead letter', async () => (await countOn(names, names.dead)) >= 1);
    const [letter] = await deadLettersOf(names);
    expect(letter).toMatchObject({ stream: names.stream, stream_seq: seq, subject: names.subject, deliveries: 3, data: poison, encoding: 'utf8' });
    expect(letter.error.kind).toBe('max_deliveries');
    expect(letter.error.message).toMatch(/not processed again: its 2 tries ended without an acknowledgement \(the replica holding it died or stalled past ack_wait, 1000 ms, each time\)/);
    expect(letter.header).toMatch(/^not processed again/);
    const url = await third.url;
    await waitFor('the dead-letter counter', async () => (await counter(url, 'toxscope_nats_dead_letters_total')) === 1);

    // terminated: nothing pending, no result, no further delivery, no advisory-made duplicate
    await waitFor('no message held', async () => (await jsm.consumers.info(names.stream, names.durable)).num_ack_pending === 0);
    await new Promise((r) => setTimeout(r, 3 * ACK_WAIT_MS));
    const info = await jsm.consumers.info(names.stream, names.durable);
    expect(info).toMatchObject({ num_ack_pending: 0, num_pending: 0 });
    expect(info.delivered.consumer_seq).toBe(3);
    expect(await countOn(names, names.dead)).toBe(1);
    expect(await countOn(names, names.results)).toBe(0);
    await third.kill9();
  });

  it("dead-letters a message whose last delivery died too, from JetStream's MAX_DELIVERIES advisory, once", async () => {
    const names = namesFor('adv');
    await createStream(names);
    // the durable as a replica with TOXSCOPE_NATS_MAX_DELIVER=1 makes it: one try and the reserved delivery
    await jsm.consumers.add(names.stream, { durable_name: names.durable, ack_policy: AckPolicy.Explicit, filter_subject: names.subject, max_deliver: 2, ack_wait: ACK_WAIT_MS * 1_000_000, max_ack_pending: -1 });
    const poison = JSON.stringify({ text: 'every replica that received this one died' });
    const { seq } = await jetstream(nc).publish(names.subject, poison);
    const consumer = await jetstream(nc).consumers.get(names.stream, names.durable);
    // both deliveries taken and never answered: what replicas that died right after receiving them leave
    for (let delivery = 1; delivery <= 2; delivery++) {
      const m = await consumer.next({ expires: 10_000 });
      expect(m?.info.deliveryCount).toBe(delivery);
    }

    const replica = startReplica(names, 'adv', 1);
    await waitFor('the dead letter', async () => (await countOn(names, names.dead)) >= 1);
    const [letter] = await deadLettersOf(names);
    expect(letter).toMatchObject({ stream: names.stream, stream_seq: seq, subject: names.subject, deliveries: 2, data: poison });
    expect(letter.error).toEqual({
      kind: 'max_deliveries',
      message: 'JetStream stopped delivering it after 2 deliveries (max_deliver) without an acknowledgement: the replicas holding it died or stalled past ack_wait (1000 ms)',
    });
    const url = await replica.url;
    await waitFor('the dead-letter counter', async () => (await counter(url, 'toxscope_nats_dead_letters_total')) === 1);
    await new Promise((r) => setTimeout(r, 3 * ACK_WAIT_MS));
    expect(await countOn(names, names.dead)).toBe(1);
    expect(await countOn(names, names.results)).toBe(0);
    expect(replica.output()).toMatch(/queue message dead-lettered/);
    await replica.kill9();
  });
});
