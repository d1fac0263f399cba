/**
 * bench reload: what a reload of a big bundle costs the requests being served meanwhile. A real service
 * (startService, PGlite in a temporary data directory) serves a bundle trained here on the golden tiny
 * checkpoint; a client keeps one classify request in flight while POST /admin/reload loads a copy whose
 * checkpoint carries an extra --mib MiB shard (sparse on disk: hashing it is the slow part), once with the
 * right hashes (swapped in) and once claiming another model (refused after hashing).
 *
 *   npm run -s bench -- reload [--json] [--mib 2048]
 *
 * Reported per reload: its wall time, the event loop's longest stall in the service while it ran
 * (monitorEventLoopDelay, 1 ms resolution; client and service share this process and its event loop),
 * classify requests answered during it and the slowest of them. The machine is shared: compare within a run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseFlags, parseIntFlag } from '../src/cli/args.js';
import { loadConfig } from '../src/config.js';
import { startService } from '../src/main.js';
import { createLogger } from '../src/util/logger.js';
import { bigShardedModel, rebindBundle } from '../test/helpers/rebind-bundle.js';
import { trainServeBundle } from '../test/helpers/serve-bundle.js';

const FLAGS = { json: { type: 'boolean', default: false }, mib: { type: 'string', default: '2048' } } as const;

interface Round {
  reload: string;
  status: number;
  reload_s: number;
  loop_max_stall_ms: number;
  classify_answered_during: number;
  classify_max_ms: number;
}

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, FLAGS) as { json: boolean; mib: string };
  const mib = parseIntFlag(values.mib, 'mib', 1);
  const root = mkdtempSync(join(tmpdir(), 'toxscope-bench-reload-'));
  const token = 'bench-reload-admin-token-0123456789';
  try {
    const trained = join(root, 'trained');
    await trainServeBundle(trained, 'bench-reload', join(root, 'cache'));
    const big = bigShardedModel(root, mib);
    const good = rebindBundle(trained, root, { model: big });
    const refused = rebindBundle(trained, root, { model: big, claimModelSha: 'f'.repeat(64) });
    const config = loadConfig({
      env: { PORT: '0', HOST: '127.0.0.1', TOXSCOPE_BUNDLE: trained, TOXSCOPE_DATA_DIR: join(root, 'data'), TOXSCOPE_ADMIN_TOKEN: token, TOXSCOPE_THREADS: '1' },
    });
    const svc = await startService(config, createLogger('silent'));
    const rounds: Round[] = [];
    try {
      await svc.ready;
      rounds.push(await round(svc.url, token, 'none (baseline, 5 s)', null));
      for (const [name, dir] of [['refused after hashing', refused], ['swapped in', good]] as const) rounds.push(await round(svc.url, token, name, dir));
    } finally {
      await svc.shutdown('bench done');
    }
    if (values.json) process.stdout.write(`${JSON.stringify({ bench: 'reload', mib, rounds })}\n`);
    else {
      process.stdout.write(`reload of a bundle whose checkpoint has an extra ${mib} MiB shard (shared machine: compare within a run)\n`);
      for (const r of rounds)
        process.stdout.write(
          `  ${r.reload.padEnd(22)} HTTP ${r.status}  ${r.reload_s.toFixed(2)} s  event loop max stall ${r.loop_max_stall_ms.toFixed(0)} ms  ` +
            `classify answered during it ${r.classify_answered_during} (slowest ${r.classify_max_ms.toFixed(0)} ms)\n`,
        );
    }
    return 0;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** One reload of `dir` with classify requests meanwhile; `dir` null: no reload, classify requests for 5 s. */
async function round(url: string, token: string, name: string, dir: string | null): Promise<Round> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const started = performance.now();
  let done = false;
  const reloading = (
    dir === null
      ? new Promise<Response>((r) => setTimeout(() => r(new Response(null, { status: 204 })), 5000))
      : fetch(`${url}/admin/reload`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: JSON.stringify({ path: dir }),
        })
  ).finally(() => (done = true));
  let answered = 0;
  let slowest = 0;
  while (!done) {
    const t0 = performance.now();
    const res = await fetch(`${url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ texts: ['while the reload runs'] }) });
    await res.arrayBuffer();
    if (!done) {
      answered++;
      slowest = Math.max(slowest, performance.now() - t0);
    }
  }
  const res = await reloading;
  await res.arrayBuffer();
  const reloadS = (performance.now() - started) / 1000;
  h.disable();
  return { reload: name, status: res.status, reload_s: reloadS, loop_max_stall_ms: h.max / 1e6, classify_answered_during: answered, classify_max_ms: slowest };
}
