/**
 * Queue vs HTTP bench: texts/s through `toxscope consume` (NATS JetStream) against the HTTP path of the same
 * process on the same texts, both at saturation.
 *
 *   1. queue:  a backlog of --messages requests (--texts-per-message texts each) is published before the
 *              service starts; the service (one replica) drains it. Rate = results between 10% and 90% of
 *              the backlog (steady state: start-up and the tail left out): messages/s and texts/s.
 *   2. http:   then, on the same process, closed-loop clients POST /v1/classify with the same texts
 *              (--texts-per-message per request) at --concurrency: texts/s.
 *
 * Both paths store every prediction (embedded PGlite in --data-dir, or --database-url). The load generator
 * shares the machine with the service; on a shared machine compare the ratio within one run, not the absolutes.
 *
 *   npx tsx bench/consume.ts [--bundle DIR] [--data-dir DIR] [--database-url URL] [--nats-url URL]
 *                            [--messages 3000] [--texts-per-message 1] [--concurrency 64] [--seconds 15] [--json]
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { readLabeled } from '../src/data/labeled.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..');

interface Options {
  bundle?: string;
  dataDir: string;
  databaseUrl?: string;
  natsUrl: string;
  messages: number;
  textsPerMessage: number;
  concurrency: number;
  seconds: number;
  json: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { dataDir: resolve('.toxscope'), natsUrl: 'nats://127.0.0.1:4222', messages: 3000, textsPerMessage: 1, concurrency: 64, seconds: 15, json: false };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case '--bundle': o.bundle = resolve(value()); break;
      case '--data-dir': o.dataDir = resolve(value()); break;
      case '--database-url': o.databaseUrl = value(); break;
      case '--nats-url': o.natsUrl = value(); break;
      case '--messages': o.messages = Number(value()); break;
      case '--texts-per-message': o.textsPerMessage = Number(value()); break;
      case '--concurrency': o.concurrency = Number(value()); break;
      case '--seconds': o.seconds = Number(value()); break;
      case '--json': o.json = true; break;
      default: throw new Error(`bench consume: unknown flag ${flag}`);
    }
  }
  if (!(o.messages >= 10) || !(o.textsPerMessage >= 1) || !(o.concurrency >= 1) || !(o.seconds > 0)) throw new Error('bench consume: bad --messages, --texts-per-message, --concurrency or --seconds');
  return o;
}

/** The licensed fixture sample, shuffled with a fixed seed (as bench http). */
function sampleTexts(n: number): string[] {
  const all = readLabeled(resolve(ROOT, 'fixtures', 'data', 'train')).map((t) => t.text).filter((t) => t.length > 0);
  let s = 12345;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, n);
}

async function freePort(): Promise<number> {
  return new Promise((r) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => r(port));
    });
  });
}

export async function run(argv: string[]): Promise<number> {
  const o = parseArgs(argv);
  const log = (s: string) => o.json || process.stderr.write(s + '\n');
  const texts = sampleTexts(4000);
  const batchOf = (i: number) => Array.from({ length: o.textsPerMessage }, (_, j) => texts[(i * o.textsPerMessage + j) % texts.length]);
  const run = randomBytes(4).toString('hex');
  const names = { stream: `TOXSCOPE_BENCH_${run}`, subject: `toxscope-bench-${run}.requests`, results: `toxscope-bench-${run}.results`, dead: `toxscope-bench-${run}.dead-letter`, durable: `bench-${run}` };

  const nc = await connect({ servers: o.natsUrl });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  let child: ReturnType<typeof spawn> | undefined;
  try {
    // 1. the backlog, then the service
    await jsm.streams.add({ name: names.stream, subjects: [names.subject, names.results, names.dead], duplicate_window: 600_000_000_000 });
    for (let i = 0; i < o.messages; i += 500) {
      await Promise.all(Array.from({ length: Math.min(500, o.messages - i) }, (_, k) => js.publish(names.subject, JSON.stringify({ texts: batchOf(i + k) }))));
    }
    log(`published a backlog of ${o.messages} messages x ${o.textsPerMessage} texts`);
    const arrivals: number[] = [];
    const sub = nc.subscribe(names.results);
    void (async () => {
      for await (const _ of sub) arrivals.push(performance.now());
    })();

    const port = await freePort();
    child = spawn(process.execPath, ['bin/toxscope.js', 'consume'], {
      cwd: ROOT,
      env: {
        ...process.env, PORT: String(port), HOST: '127.0.0.1', TOXSCOPE_DATA_DIR: o.dataDir, TOXSCOPE_LOG_LEVEL: 'warn',
        ...(o.bundle && { TOXSCOPE_BUNDLE: o.bundle }), ...(o.databaseUrl && { DATABASE_URL: o.databaseUrl }),
        TOXSCOPE_NATS_URL: o.natsUrl, TOXSCOPE_NATS_STREAM: names.stream, TOXSCOPE_NATS_SUBJECT: names.subject,
        TOXSCOPE_NATS_RESULTS_SUBJECT: names.results, TOXSCOPE_NATS_DEAD_LETTER_SUBJECT: names.dead, TOXSCOPE_NATS_DURABLE: names.durable,
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 15 * 60_000;
    while (arrivals.length < o.messages) {
      if (child.exitCode !== null) throw new Error(`bench consume: the service exited with ${child.exitCode}`);
      if (Date.now() > deadline) throw new Error(`bench consume: ${arrivals.length} of ${o.messages} results after 15 minutes`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const lo = Math.floor(0.1 * o.messages);
    const hi = Math.floor(0.9 * o.messages);
    const seconds = (arrivals[hi] - arrivals[lo]) / 1000;
    const queue = { messages: hi - lo, seconds, messagesPerSecond: (hi - lo) / seconds, textsPerSecond: ((hi - lo) * o.textsPerMessage) / seconds };
    log(`queue: ${queue.messagesPerSecond.toFixed(1)} messages/s, ${queue.textsPerSecond.toFixed(1)} texts/s (results ${lo}..${hi} of ${o.messages}, ${seconds.toFixed(1)} s)`);

    // 2. HTTP on the same process, same texts, closed loop at saturation
    const agent = new Agent({ keepAlive: true, maxSockets: o.concurrency });
    const post = (batch: string[]) =>
      new Promise<number>((ok, fail) => {
        const body = JSON.stringify({ texts: batch });
        const req = request(new URL('/v1/classify', url), { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
          res.resume();
          res.on('end', () => ok(res.statusCode ?? 0));
        });
        req.on('error', fail);
        req.end(body);
      });
    const loop = async (secs: number) => {
      let next = 0;
      let done = 0;
      const statuses: Record<number, number> = {};
      const start = performance.now();
      const end = start + secs * 1000;
      await Promise.all(
        Array.from({ length: o.concurrency }, async () => {
          while (performance.now() < end) {
            const status = await post(batchOf(next++));
            statuses[status] = (statuses[status] ?? 0) + 1;
            if (status === 200) done += o.textsPerMessage;
          }
        }),
      );
      const elapsed = (performance.now() - start) / 1000;
      return { seconds: elapsed, textsPerSecond: done / elapsed, statuses };
    };
    await loop(2); // warm the connections
    const http = await loop(o.seconds);
    log(`http: ${http.textsPerSecond.toFixed(1)} texts/s at concurrency ${o.concurrency} (${http.seconds.toFixed(1)} s, statuses ${JSON.stringify(http.statuses)})`);
    agent.destroy();

    const ratio = queue.textsPerSecond / http.textsPerSecond;
    const summary = { textsPerMessage: o.textsPerMessage, messages: o.messages, concurrency: o.concurrency, queue, http, queueOverHttp: ratio };
    if (o.json) process.stdout.write(JSON.stringify(summary) + '\n');
    else log(`queue/http texts/s at saturation: ${(ratio * 100).toFixed(1)}% (target >= 90%)`);
    return 0;
  } finally {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    await jsm.streams.delete(names.stream).catch(() => undefined);
    await nc.close();
  }
}
