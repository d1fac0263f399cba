/**
 * bench drift: prediction logging to a real Postgres through the write queue, measured in three phases on a
 * fresh database (created on the server of --url / DATABASE_URL and dropped afterwards):
 *   capacity  the writer kept busy: sustained rows/s committed
 *   offered   a fixed offered rate of single-row enqueues (one per classify request): the request-path cost of
 *             enqueue (us), the event-loop delay the writer adds (ms), queue depth and drain time
 *   outage    the database unreachable: enqueue cost while rows spill to disk, then replay rows/s from the file
 *
 *   npm run -s bench -- drift [--json] [--url postgres://...] [--seconds 5] [--rate 2000]
 *       [--batch-size 500] [--max-queued 10000] [--outage-rows 20000]
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import postgres from 'postgres';
import { parseFlags, parseIntFlag, UsageError } from '../src/cli/args.js';
import { createDb, executeRows } from '../src/db/client.js';
import { createRepository, type Repository } from '../src/db/repository.js';
import type { NewPrediction } from '../src/db/schema.js';
import { WriteQueue } from '../src/db/write-queue.js';
import { sql } from 'drizzle-orm';

const FLAGS = {
  json: { type: 'boolean', default: false },
  url: { type: 'string' },
  seconds: { type: 'string', default: '5' },
  rate: { type: 'string', default: '2000' },
  'batch-size': { type: 'string', default: '500' },
  'max-queued': { type: 'string', default: '10000' },
  'outage-rows': { type: 'string', default: '20000' },
} as const;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nowNs = () => process.hrtime.bigint();

function row(i: number): NewPrediction {
  return {
    id: randomUUID(),
    requestId: randomUUID(),
    createdAt: new Date(),
    language: ['en', 'de', 'fr', 'es', 'zh'][i % 5],
    languageSource: 'detected',
    score: (i % 100) / 100,
    threshold: 0.5,
    label: i % 100 >= 50,
    bundleVersion: 'bench',
    textSha256: 'a'.repeat(64),
  };
}

function percentiles(samplesNs: number[]): { p50: number; p99: number; max: number } {
  const s = [...samplesNs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] / 1000;
  return { p50: round(at(0.5)), p99: round(at(0.99)), max: round(s[s.length - 1] / 1000) };
}
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

async function waitUntilWritten(queue: WriteQueue): Promise<void> {
  for (;;) {
    try {
      await queue.flush();
      return;
    } catch {
      await sleep(20);
    }
  }
}

export async function run(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, FLAGS);
  const url = (flags.url as string | undefined) ?? process.env.DATABASE_URL;
  if (!url) throw new UsageError('bench drift needs a Postgres server: --url postgres://... or DATABASE_URL');
  const seconds = parseIntFlag(flags.seconds as string, 'seconds', 1);
  const rate = parseIntFlag(flags.rate as string, 'rate', 1);
  const batchSize = parseIntFlag(flags['batch-size'] as string, 'batch-size', 1);
  const maxQueued = parseIntFlag(flags['max-queued'] as string, 'max-queued', 1);
  const outageRows = parseIntFlag(flags['outage-rows'] as string, 'outage-rows', 1);

  const name = `toxscope_bench_${Date.now()}`;
  const admin = postgres(url, { max: 1, onnotice: () => undefined });
  await admin.unsafe(`CREATE DATABASE "${name}"`);
  const dbUrl = new URL(url);
  dbUrl.pathname = `/${name}`;
  const dir = mkdtempSync(join(tmpdir(), 'toxscope-bench-drift-'));
  const handle = await createDb({ url: dbUrl.toString() });
  try {
    const repo = createRepository(handle.db);
    const [{ version }] = await executeRows<{ version: string }>(handle.db, sql`select current_setting('server_version') as version`);
    let i = 0;

    // capacity: keep the writer busy for `seconds`.
    const capacity = await (async () => {
      const q = new WriteQueue({ repo, journalDir: join(dir, 'capacity'), batchSize, maxQueued });
      const t0 = nowNs();
      const end = Date.now() + seconds * 1000;
      while (Date.now() < end) {
        if (q.stats().queued >= maxQueued / 2) await sleep(1);
        else for (let k = 0; k < 100; k++) q.enqueuePredictions([row(i++)]);
        if (i % 1000 === 0) await new Promise((r) => setImmediate(r));
      }
      const written = q.stats().written;
      const elapsed = Number(nowNs() - t0) / 1e9;
      await q.close({ timeoutMs: 60_000 });
      return { rows_per_s: Math.round(written / elapsed), seconds: round(elapsed, 2), batch_size: batchSize, spilled: q.stats().spilledTotal };
    })();

    // offered: `rate` single-row enqueues per second, in 5 ms ticks.
    const offered = await (async () => {
      const q = new WriteQueue({ repo, journalDir: join(dir, 'offered'), batchSize, maxQueued });
      const loop = monitorEventLoopDelay({ resolution: 1 });
      loop.enable();
      const enqueueNs: number[] = [];
      let maxDepth = 0;
      const t0 = Date.now();
      let sent = 0;
      while (Date.now() - t0 < seconds * 1000) {
        const due = Math.floor(((Date.now() - t0) / 1000) * rate);
        for (; sent < due; sent++) {
          const r = row(i++);
          const a = nowNs();
          q.enqueuePredictions([r]);
          enqueueNs.push(Number(nowNs() - a));
        }
        maxDepth = Math.max(maxDepth, q.stats().queued + q.stats().spilled);
        await sleep(5);
      }
      const elapsed = (Date.now() - t0) / 1000;
      const d0 = Date.now();
      await waitUntilWritten(q);
      const drainMs = Date.now() - d0;
      loop.disable();
      await q.close();
      return {
        rate,
        achieved_rows_per_s: Math.round(sent / elapsed),
        enqueue_us: percentiles(enqueueNs),
        event_loop_delay_ms: { p50: round(loop.percentile(50) / 1e6, 2), p99: round(loop.percentile(99) / 1e6, 2), max: round(loop.max / 1e6, 2) },
        max_depth: maxDepth,
        spilled: q.stats().spilledTotal,
        drain_ms: drainMs,
      };
    })();

    // outage: every write fails; every row is journaled; past the memory bound rows live only in the journal; then the database comes back.
    const outage = await (async () => {
      let down = true;
      const refuse = () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
      const flaky: Repository = {
        ...repo,
        insertPredictions: (rows) => (down ? refuse() : repo.insertPredictions(rows)),
        recordFeedback: (items) => (down ? refuse() : repo.recordFeedback(items)),
      };
      const q = new WriteQueue({ repo: flaky, journalDir: join(dir, 'outage'), batchSize, maxQueued: Math.min(maxQueued, 1000), retryMinMs: 10, retryMaxMs: 50 });
      const enqueueNs: number[] = [];
      for (let k = 0; k < outageRows; k++) {
        const r = row(i++);
        const a = nowNs();
        q.enqueuePredictions([r]);
        enqueueNs.push(Number(nowNs() - a));
        if (k % 500 === 0) await new Promise((res) => setImmediate(res));
      }
      const spilled = q.stats().spilled;
      const bytes = q.stats().journalBytes;
      down = false;
      const t0 = nowNs();
      await waitUntilWritten(q);
      const replayS = Number(nowNs() - t0) / 1e9;
      await q.close();
      return {
        rows: outageRows,
        spilled_rows: spilled,
        journal_bytes_per_row: Math.round(bytes / outageRows),
        enqueue_while_spilling_us: percentiles(enqueueNs),
        replay_rows_per_s: Math.round(outageRows / replayS),
      };
    })();

    const [{ n }] = await executeRows<{ n: number }>(handle.db, sql`select count(*)::int as n from predictions`);
    const result = { bench: 'drift', postgres: version, rows_total: n, rows_enqueued: i, capacity, offered, outage };
    if (n !== i) throw new Error(`bench drift: ${i} rows enqueued but ${n} in the database`);
    if (flags.json) process.stdout.write(JSON.stringify(result) + '\n');
    else process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    return 0;
  } finally {
    await handle.close();
    await admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.exitCode = await run(process.argv.slice(2));
}
