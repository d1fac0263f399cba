/**
 * HTTP load bench: what the service costs over the engine's own throughput, and how it behaves overloaded.
 *
 *   1. engine:   the classification pipeline in-process (tokenize -> batcher -> worker engine -> head), no
 *                HTTP, closed loop at each concurrency: texts/s, p50/p99
 *   2. http:     the service in a child process on 127.0.0.1, closed-loop clients (node:http, keep-alive)
 *                at each concurrency: texts/s, p50/p99 latency, status counts
 *   3. overload: the service with a small queue, hit far beyond it: 429 share, latency of admitted
 *                requests, server RSS before and after
 *
 * Texts: the licensed fixture sample (fixtures/data/train), shuffled with a fixed seed, one text per request
 * unless --texts-per-request. The load generator shares the machine with the server: on a small box its own
 * CPU use lowers the HTTP figures (reported as client CPU seconds).
 *
 *   npx tsx bench/http.ts [--bundle DIR] [--data-dir DIR] [--concurrency 1,4,16,64] [--seconds 8]
 *                         [--texts-per-request 1] [--overload-concurrency 256] [--overload-queue 32] [--overload-rounds 3] [--json]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadConfig } from '../src/config.js';
import { readLabeled } from '../src/data/labeled.js';
import { createLogger } from '../src/util/logger.js';
import { loadServingBundle } from '../src/main.js';
import { createMetrics } from '../src/metrics/metrics.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..');

interface Options {
  bundle?: string;
  dataDir: string;
  concurrency: number[];
  seconds: number;
  textsPerRequest: number;
  overloadConcurrency: number;
  overloadQueue: number;
  overloadRounds: number;
  json: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { dataDir: resolve('.toxscope'), concurrency: [1, 4, 16, 64], seconds: 8, textsPerRequest: 1, overloadConcurrency: 256, overloadQueue: 32, overloadRounds: 3, json: false };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case '--bundle': o.bundle = resolve(value()); break;
      case '--data-dir': o.dataDir = resolve(value()); break;
      case '--concurrency': o.concurrency = value().split(',').map(Number); break;
      case '--seconds': o.seconds = Number(value()); break;
      case '--texts-per-request': o.textsPerRequest = Number(value()); break;
      case '--overload-concurrency': o.overloadConcurrency = Number(value()); break;
      case '--overload-queue': o.overloadQueue = Number(value()); break;
      case '--overload-rounds': o.overloadRounds = Number(value()); break;
      case '--json': o.json = true; break;
      default: throw new Error(`bench http: unknown flag ${flag}`);
    }
  }
  if (o.concurrency.some((c) => !(c >= 1)) || !(o.seconds > 0) || !(o.textsPerRequest >= 1)) throw new Error('bench http: bad --concurrency, --seconds or --texts-per-request');
  return o;
}

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

interface Phase {
  concurrency: number;
  seconds: number;
  requests: number;
  textsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  statuses: Record<string, number>;
  /** p99 of the rejected (429) answers: fail-fast means small */
  p99RejectedMs?: number;
  clientCpuSeconds?: number;
}

const quantile = (xs: number[], q: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

/** Closed loop: `concurrency` workers, each sending its next request when the previous one answered. */
async function closedLoop(concurrency: number, seconds: number, texts: string[], per: number, send: (batch: string[]) => Promise<number>): Promise<Phase> {
  const ok: number[] = [];
  const rejected: number[] = [];
  const statuses: Record<string, number> = {};
  let next = 0;
  let textsDone = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const batch = Array.from({ length: per }, () => texts[next++ % texts.length]);
        const t0 = performance.now();
        const status = await send(batch);
        const ms = performance.now() - t0;
        statuses[status] = (statuses[status] ?? 0) + 1;
        if (status === 200) {
          ok.push(ms);
          textsDone += per;
        } else if (status === 429) rejected.push(ms);
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    concurrency,
    seconds: elapsed,
    requests: ok.length + rejected.length,
    textsPerSecond: textsDone / elapsed,
    p50Ms: quantile(ok, 0.5),
    p99Ms: quantile(ok, 0.99),
    statuses,
    ...(rejected.length > 0 && { p99RejectedMs: quantile(rejected, 0.99) }),
    clientCpuSeconds: (cpu.user + cpu.system) / 1e6,
  };
}

function httpClient(url: string, concurrency: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const u = new URL('/v1/classify', url);
  return (texts: string[]) =>
    new Promise<number>((resolveStatus, reject) => {
      const body = JSON.stringify({ texts });
      const req = request(u, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.on('end', () => resolveStatus(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(body);
    });
}

async function freePort(): Promise<number> {
  return new Promise((r) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => r(port));
    });
  });
}

async function startServer(o: Options, env: Record<string, string>): Promise<{ url: string; child: ChildProcess; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--serve-child'], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', TOXSCOPE_DATA_DIR: o.dataDir, TOXSCOPE_LOG_LEVEL: 'warn', ...(o.bundle && { TOXSCOPE_BUNDLE: o.bundle }), ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`bench http: the server exited with ${child.exitCode}`);
    const ready = await fetch(`${url}/readyz`).then((r) => r.status === 200, () => false);
    if (ready) break;
    if (i > 1200) throw new Error('bench http: the server did not get ready in 10 minutes');
    await new Promise((r) => setTimeout(r, 500));
  }
  return {
    url,
    child,
    stop: () =>
      new Promise<void>((r) => {
        child.once('exit', () => r());
        child.kill('SIGTERM');
      }),
  };
}

async function serverRss(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^toxscope_process_resident_memory_bytes (\S+)/m.exec(text)?.[1] ?? NaN);
}

export async function run(argv: string[]): Promise<number> {
  const o = parseArgs(argv);
  const log = (s: string) => o.json || process.stderr.write(s + '\n');
  const texts = sampleTexts(4000);

  // 1. engine in-process (the same bundle, configuration and worker-thread engine as the server), no HTTP
  const config = loadConfig({ env: { TOXSCOPE_DATA_DIR: o.dataDir, ...(o.bundle && { TOXSCOPE_BUNDLE: o.bundle }) } });
  const loaded = await loadServingBundle(undefined, config, { metrics: createMetrics({ processDefaults: false }), log: createLogger('warn') });
  const classifier = loaded.classifier;
  const engineSend = async (b: string[]) => (await classifier.classify({ texts: b }), 200);
  const engine: Phase[] = [];
  for (const c of o.concurrency) {
    await closedLoop(c, 1, texts, o.textsPerRequest, engineSend); // warm
    const p = await closedLoop(c, o.seconds, texts, o.textsPerRequest, engineSend);
    engine.push(p);
    log(`engine c=${c}: ${p.textsPerSecond.toFixed(1)} texts/s, p50 ${p.p50Ms.toFixed(1)} ms, p99 ${p.p99Ms.toFixed(1)} ms`);
  }
  await classifier.close();

  // 2. http at each concurrency
  const server = await startServer(o, {});
  const http: Phase[] = [];
  try {
    for (const c of o.concurrency) {
      const send = httpClient(server.url, c);
      await closedLoop(c, 1, texts, o.textsPerRequest, send); // warm
      const p = await closedLoop(c, o.seconds, texts, o.textsPerRequest, send);
      http.push(p);
      log(`http c=${c}: ${p.textsPerSecond.toFixed(1)} texts/s, p50 ${p.p50Ms.toFixed(1)} ms, p99 ${p.p99Ms.toFixed(1)} ms, statuses ${JSON.stringify(p.statuses)}`);
    }
  } finally {
    await server.stop();
  }

  // 3. overload: a small queue, many more clients than it holds
  const small = await startServer(o, { TOXSCOPE_QUEUE_CAPACITY: String(o.overloadQueue) });
  let overload: Phase & { rssBeforeMiB: number; rssAfterMiB: number; rssAfterRoundMiB: number[] };
  try {
    const rssBefore = await serverRss(small.url);
    // several rounds against the same server: memory that keeps growing round after round would be a leak,
    // a first-round rise that then holds is the allocator's high-water mark for the largest batch
    const rounds: Phase[] = [];
    const rssAfterRound: number[] = [];
    for (let r = 0; r < o.overloadRounds; r++) {
      rounds.push(await closedLoop(o.overloadConcurrency, o.seconds, texts, o.textsPerRequest, httpClient(small.url, o.overloadConcurrency)));
      rssAfterRound.push((await serverRss(small.url)) / 2 ** 20);
    }
    const p = rounds[rounds.length - 1];
    overload = { ...p, rssBeforeMiB: rssBefore / 2 ** 20, rssAfterMiB: rssAfterRound[rssAfterRound.length - 1], rssAfterRoundMiB: rssAfterRound };
    log(
      `overload c=${o.overloadConcurrency}, queue ${o.overloadQueue} (last of ${o.overloadRounds} rounds): ${p.textsPerSecond.toFixed(1)} texts/s admitted, statuses ${JSON.stringify(p.statuses)}, ` +
        `p99 admitted ${p.p99Ms.toFixed(1)} ms, p99 rejected ${p.p99RejectedMs?.toFixed(1)} ms, RSS ${overload.rssBeforeMiB.toFixed(0)} MiB -> after each round ${rssAfterRound.map((x) => x.toFixed(0)).join(', ')} MiB`,
    );
  } finally {
    await small.stop();
  }

  // saturation = the best throughput over the concurrencies tried, for each path
  const ratio = Math.max(...http.map((p) => p.textsPerSecond)) / Math.max(...engine.map((p) => p.textsPerSecond));
  const perConcurrency = o.concurrency.map((c, i) => ({ concurrency: c, ratio: http[i].textsPerSecond / engine[i].textsPerSecond }));
  const summary = { bundle: loaded.info.version, textsPerRequest: o.textsPerRequest, engine, http, overload, httpOverEngine: ratio, perConcurrency };
  if (o.json) process.stdout.write(JSON.stringify(summary) + '\n');
  else {
    log(`http/engine per concurrency: ${perConcurrency.map((p) => `c=${p.concurrency} ${(p.ratio * 100).toFixed(1)}%`).join(', ')}`);
    log(`http/engine at saturation (best of each): ${(ratio * 100).toFixed(1)}% (HTTP path costs ${((1 - ratio) * 100).toFixed(1)}%)`);
  }
  return 0;
}

/** The server child: `toxscope serve` with the environment the parent set. */
async function serveChild(): Promise<void> {
  const { serveCommand } = await import('../src/cli/serve.js');
  process.exitCode = await serveCommand.run([], { stdout: (t) => process.stdout.write(t), stderr: () => undefined });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes('--serve-child')) await serveChild();
  else process.exitCode = await run(process.argv.slice(2));
}
