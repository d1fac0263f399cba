/**
 * Event-loop stall caused by the embedded PGlite: the same work with PGlite on the main thread (how the service
 * ran it before src/db/pglite-worker.ts) and through createDb (PGlite on its worker thread), alternated so that
 * both see the same machine. Only the database works here (no engine, no HTTP), so what the loop waits for is
 * the database's own work plus whatever the machine's other jobs take from this process.
 *
 *   1. create a new on-disk database and apply the migrations
 *   2. for --seconds: every 250 ms one insert of --rows prediction rows (the write queue's batches at about
 *      4 x rows rows/s) and every 2 s the drift monitor's confusion query
 *
 * The loop's delay is perf_hooks.monitorEventLoopDelay (10 ms resolution): max and p99 per phase.
 *
 *   npm run -s bench -- db-stall [--seconds 10] [--rows 250] [--rounds 2] [--json]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { randomUUID } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import { drizzle } from 'drizzle-orm/pglite';
import { migrate } from 'drizzle-orm/pglite/migrator';
import { createDb, DEFAULT_MIGRATIONS_FOLDER, type Database } from '../src/db/client.js';
import { createRepository } from '../src/db/repository.js';
import * as schema from '../src/db/schema.js';

interface Options {
  seconds: number;
  rows: number;
  rounds: number;
  json: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { seconds: 10, rows: 250, rounds: 2, json: false };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => Number(inline ?? argv[++i]);
    switch (flag) {
      case '--seconds': o.seconds = value(); break;
      case '--rows': o.rows = value(); break;
      case '--rounds': o.rounds = value(); break;
      case '--json': o.json = true; break;
      default: throw new Error(`bench db-stall: unknown flag ${flag}`);
    }
  }
  return o;
}

type Mode = 'main-thread' | 'worker';

async function open(mode: Mode, dir: string): Promise<{ db: Database; close(): Promise<void> }> {
  if (mode === 'worker') return createDb({ dataDir: dir });
  const client = await PGlite.create(join(dir, 'pglite'));
  const db = drizzle({ client, schema, casing: 'snake_case' });
  await migrate(db, { migrationsFolder: DEFAULT_MIGRATIONS_FOLDER });
  return { db: db as unknown as Database, close: () => client.close() };
}

async function measure<T>(work: () => Promise<T>): Promise<{ value: T; maxMs: number; p99Ms: number; ms: number }> {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  const t0 = performance.now();
  const value = await work();
  const ms = performance.now() - t0;
  h.disable();
  return { value, maxMs: h.max / 1e6, p99Ms: h.percentile(99) / 1e6, ms };
}

const round1 = (x: number) => Math.round(x * 10) / 10;

export async function run(argv: string[]): Promise<number> {
  const o = parseArgs(argv);
  const log = (s: string) => o.json || process.stderr.write(s + '\n');
  const results: Record<string, unknown>[] = [];
  for (let round = 1; round <= o.rounds; round++) {
    for (const mode of ['main-thread', 'worker'] as Mode[]) {
      const dir = mkdtempSync(join(tmpdir(), `toxscope-db-stall-${mode}-`));
      try {
        const load0 = loadavg()[0];
        const created = await measure(() => open(mode, dir));
        const repo = createRepository(created.value.db);
        let inserted = 0;
        const writes = await measure(async () => {
          const end = performance.now() + o.seconds * 1000;
          for (let tick = 0; performance.now() < end; tick++) {
            const rows = Array.from({ length: o.rows }, () => ({
              id: randomUUID(), requestId: randomUUID(), createdAt: new Date(), language: 'en', languageSource: 'hint' as const,
              score: Math.random(), threshold: 0.5, label: false, bundleVersion: 'bench', textSha256: 'f'.repeat(64),
            }));
            const next = new Promise((r) => setTimeout(r, 250));
            inserted += await repo.insertPredictions(rows);
            if (tick % 8 === 0) await repo.confusionByLanguage(new Date(Date.now() - 3_600_000), new Date());
            await next;
          }
        });
        await created.value.close();
        const r = {
          round, mode, load_average: round1(load0),
          create_migrate: { ms: Math.round(created.ms), max_stall_ms: round1(created.maxMs) },
          writes: { seconds: o.seconds, rows: inserted, max_stall_ms: round1(writes.maxMs), p99_stall_ms: round1(writes.p99Ms) },
        };
        results.push(r);
        log(`round ${round} ${mode.padEnd(11)} (load ${r.load_average}): create+migrate ${r.create_migrate.ms} ms, longest stall ${r.create_migrate.max_stall_ms} ms; ` +
          `${inserted} rows in ${o.seconds} s, longest stall ${r.writes.max_stall_ms} ms, p99 ${r.writes.p99_stall_ms} ms`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  if (o.json) process.stdout.write(JSON.stringify({ bench: 'db-stall', rows_per_insert: o.rows, results }) + '\n');
  return 0;
}

if (process.argv[1] && import.meta.url === `file://${process.argv[1]}`) process.exitCode = await run(process.argv.slice(2));
