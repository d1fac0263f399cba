/**
 * `toxscope consume` end to end, with the real NATS JetStream server and Postgres: two replicas (real
 * processes) share one durable consumer over a backlog; one is killed with SIGKILL midway. Every message gets
 * exactly one set of prediction rows (none missing, none twice) and one result; a malformed message lands on
 * the dead-letter subject once. Stream, subjects and durable are unique to this run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, freshPostgresDatabase, type FreshDatabase } from './helpers/db.js';
import { repoRoot } from './helpers/goldens.js';
import { natsAvailable, NATS_URL } from './helpers/nats.js';
import { trainServeBundle } from './helpers/serve-bundle.js';

const run = randomBytes(4).toString('hex');
const names = {
  stream: `TOXSCOPE_TEST_${run}`,
  subject: `toxscope-test-${run}.requests`,
  results: `toxscope-test-${run}.results`,
  dead: `toxscope-test-${run}.dead-letter`,
  durable: `consumers-${run}`,
};
const root = mkdtempSync(join(tmpdir(), 'toxscope-queue-'));
const bundleDir = join(root, 'bundle');
const procs: ChildProcess[] = [];
// two replicas share one database: this needs Postgres (DATABASE_URL, as CI sets it) and the NATS server
const hasNats = await natsAvailable();
if (!DATABASE_URL) console.warn('DATABASE_URL is not set: the queue consumer test (two replicas on one Postgres) is skipped');
const enabled = hasNats && DATABASE_URL !== undefined;

let nc: NatsConnection;
let jsm: JetStreamManager;
let db: FreshDatabase;

beforeAll(async () => {
  if (!enabled) return;
  nc = await connect({ servers: NATS_URL });
  jsm = await jetstreamManager(nc);
  db = await freshPostgresDatabase('toxscope_queue');
  await trainServeBundle(bundleDir, 'queue-test', join(root, 'cache'));
}, 180_000);

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  if (enabled) {
    await jsm?.streams.delete(names.stream).catch(() => undefined);
    await nc?.close();
    await db?.drop().catch(() => undefined);
  }
  rmSync(root, { recursive: true, force: true });
});

interface Replica {
  proc: ChildProcess;
  url: Promise<string>;
  output: () => string;
  exited: Promise<number | null>;
}

function startReplica(name: string): Replica {
  const proc = spawn(process.execPath, ['bin/toxscope.js', 'consume'], {
    cwd: repoRoot,
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      TOXSCOPE_BUNDLE: bundleDir,
      TOXSCOPE_DATA_DIR: join(root, `data-${name}`),
      DATABASE_URL: db.url,
      TOXSCOPE_THREADS: '1',
      TOXSCOPE_LOG_LEVEL: 'info',
      TOXSCOPE_NATS_URL: NATS_URL,
      TOXSCOPE_NATS_STREAM: names.stream,
      TOXSCOPE_NATS_SUBJECT: names.subject,
      TOXSCOPE_NATS_RESULTS_SUBJECT: names.results,
      TOXSCOPE_NATS_DEAD_LETTER_SUBJECT: names.dead,
      TOXSCOPE_NATS_DURABLE: names.durable,
      TOXSCOPE_NATS_ACK_WAIT_MS: '3000',
      TOXSCOPE_NATS_MAX_INFLIGHT: '16',
      // batches wait a little for company: a replica always holds some messages while the backlog lasts
      TOXSCOPE_MAX_WAIT_MS: '50',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.push(proc);
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const url = (async () => {
    for (let i = 0; i < 1800; i++) {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) return m[1];
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`replica ${name} did not start:\n${out}`);
  })();
  return { proc, url, output: () => out, exited: new Promise((r) => proc.once('exit', (c) => r(c))) };
}

async function counter(url: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels}`) || (labels === '' && l.startsWith(`${name} `)));
  return line ? Number(line.split(' ').pop()) : 0;
}

/** Messages kept on one subject of the stream. */
async function countOn(subject: string): Promise<number> {
  const info = await jsm.streams.info(names.stream, { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe.skipIf(!enabled)('toxscope consume (NATS JetStream, two replicas, one killed)', () => {
  const MESSAGES = 240;
  const texts = (i: number) => Array.from({ length: 1 + (i % 3) }, (_, j) => `message ${i} text ${j}: ${i % 2 ? 'you are an idiot' : 'have a nice day'}`);

  it('classifies every message exactly once into the database despite a kill -9, and dead-letters a malformed one once', async () => {
    // the backlog, before any consumer runs; one malformed message in the middle
    await jsm.streams.add({ name: names.stream, subjects: [names.subject, names.results, names.dead], duplicate_window: 600_000_000_000 });
    const js = jetstream(nc);
    let expectedRows = 0;
    for (let i = 0; i < MESSAGES; i++) {
      if (i === MESSAGES / 2) await js.publish(names.subject, '{"texts": "not a list"');
      const t = texts(i);
      expectedRows += t.length;
      await js.publish(names.subject, JSON.stringify(i % 10 === 0 ? { id: `caller-${run}-${i}`, texts: t } : { texts: t, language: 'en' }));
    }

    const a = startReplica('a');
    const b = startReplica('b');
    const [urlA, urlB] = await Promise.all([a.url, b.url]);
    // A works part of the backlog with B beside it, then dies without a word while it holds messages
    await waitFor(
      'A having finished some messages and holding more, a sixth of the results in',
      async () =>
        (await countOn(names.results)) >= MESSAGES / 6 &&
        (await counter(urlA, 'toxscope_nats_messages_total', '{outcome="ok"}')) > 0 &&
        (await counter(urlA, 'toxscope_nats_inflight')) > 0,
      240_000,
    );
    const doneByA = await counter(urlA, 'toxscope_nats_messages_total', '{outcome="ok"}');
    a.proc.kill('SIGKILL');
    await a.exited;
    expect(doneByA).toBeGreaterThan(0); // both replicas took part

    await waitFor('every result', async () => (await countOn(names.results)) >= MESSAGES, 300_000);
    await waitFor('the dead letter', async () => (await countOn(names.dead)) >= 1, 30_000);
    // B's /metrics: what it did, the redeliveries of A's unacknowledged messages, the lag drained
    expect(await counter(urlB, 'toxscope_nats_messages_total', '{outcome="ok"}')).toBeGreaterThan(0);
    // (A may acknowledge what it held between the in-flight check and the kill, so B's redelivery count can be 0 and is not asserted:
    // every result arriving exactly once, checked below, is what proves A's unacknowledged messages were redone.)
    // the dead letter was terminated, not redelivered: nothing is left unacknowledged
    await waitFor('every message acknowledged', async () => (await jsm.consumers.info(names.stream, names.durable)).num_ack_pending === 0, 10_000);
    expect((await counter(urlB, 'toxscope_nats_dead_letters_total')) + (await counter(urlA, 'toxscope_nats_dead_letters_total').catch(() => 0))).toBeLessThanOrEqual(1);
    b.proc.kill('SIGTERM');
    expect(await b.exited).toBe(0);

    // exactly one result per message (redelivered results were deduplicated by their Nats-Msg-Id) ...
    expect(await countOn(names.results)).toBe(MESSAGES);
    // ... one dead letter, saying what was wrong with which message
    expect(await countOn(names.dead)).toBe(1);
    const dlq = await jsm.streams.getMessage(names.stream, { last_by_subj: names.dead });
    const letter = dlq!.json<{ error: { kind: string; message: string }; data: string; stream_seq: number }>();
    expect(letter.error.kind).toBe('validation');
    expect(letter.data).toBe('{"texts": "not a list"');
    // ... and one row per text of every message: none missing, none twice (ids derived from the message)
    const sql = postgres(db.url, { max: 1, onnotice: () => undefined });
    try {
      const rows = await sql<{ id: string }[]>`select id from predictions`;
      expect(rows.length).toBe(expectedRows);
      const ids = new Set(rows.map((r) => r.id));
      expect(ids.size).toBe(expectedRows);
      for (let i = 0; i < MESSAGES; i++) {
        if (i % 10 === 0) for (let j = 0; j < texts(i).length; j++) expect(ids.has(`q:caller-${run}-${i}:${j}`), `message ${i}`).toBe(true);
      }
      const bySeq = rows.filter((r) => r.id.startsWith(`nats:${names.stream}:`)).length;
      expect(bySeq).toBe(expectedRows - Array.from({ length: MESSAGES }, (_, i) => i).filter((i) => i % 10 === 0).reduce((s, i) => s + texts(i).length, 0));
    } finally {
      await sql.end();
    }
  }, 600_000);
});
