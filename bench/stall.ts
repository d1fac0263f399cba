/**
 * Event-loop stall bench (issue #10 item 1): the service in a child process serves normal traffic (closed-loop
 * clients, one short text per request) while hostile bodies arrive among it: over-budget batches of long texts,
 * one-word and CJK texts of 100,000 characters, deeply nested and very wide JSON, multi-megabyte bodies. The
 * server's own event-loop delay (perf_hooks.monitorEventLoopDelay through prom-client's
 * toxscope_nodejs_eventloop_lag_max_seconds, read every second) gives the longest stall of each phase:
 *
 *   1. normal traffic alone        2. normal traffic with hostile bodies arriving
 *
 * The clients share the machine with the server (and, here, with other work): compare the two phases of one
 * run, not runs of different days.
 *
 * Each hostile kind has its own client (one request of that kind in flight at a time). On a machine shared with
 * other jobs the server's loop also waits for a CPU: `--nice -5` raises the server's priority (root) so that
 * what is measured is the service's own work, and the report says so.
 *
 *   npm run -s bench -- stall [--bundle DIR] [--data-dir DIR] [--seconds 20] [--clients 4] [--nice N] [--json]
 */
import { spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
import { setPriority } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..');

interface Options {
  bundle?: string;
  dataDir: string;
  seconds: number;
  clients: number;
  nice?: number;
  json: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { dataDir: resolve('.toxscope'), seconds: 20, clients: 4, json: false };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case '--bundle': o.bundle = resolve(value()); break;
      case '--data-dir': o.dataDir = resolve(value()); break;
      case '--seconds': o.seconds = Number(value()); break;
      case '--clients': o.clients = Number(value()); break;
      case '--nice': o.nice = Number(value()); break;
      case '--json': o.json = true; break;
      default: throw new Error(`bench stall: unknown flag ${flag}`);
    }
  }
  return o;
}

const prose = (n: number) => Array.from({ length: Math.ceil(n / 32) }, (_, i) => `this is sentence ${i} of a text. `).join('').slice(0, n);
const cjk = (n: number) => Array.from({ length: n }, (_, i) => String.fromCharCode(0x4e00 + ((i * 7919) % 20000))).join('');

/** Each hostile request: a name, its path and its body (built once). */
const HOSTILE: { name: string; path: string; body: string }[] = [
  { name: 'ten 100k-character texts (over the token budget)', path: '/v1/classify', body: JSON.stringify({ texts: Array(10).fill(prose(100_000)) }) },
  { name: "one 100k-character word ('a' x 100000)", path: '/v1/classify', body: JSON.stringify({ texts: ['a'.repeat(100_000)] }) },
  { name: '100k CJK characters, no spaces', path: '/v1/classify', body: JSON.stringify({ texts: [cjk(100_000)] }) },
  { name: 'Perspective, 5000-deep nesting', path: '/v1alpha1/comments:analyze', body: `{"comment": {"text": "hi"}, "requestedAttributes": {"TOXICITY": {}}, "context": ${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}` },
  { name: '1,000,000-element JSON array', path: '/v1/classify', body: `{"texts": [${'"x",'.repeat(999_999)}"x"]}` },
  { name: 'one 4 MB string', path: '/v1/classify', body: JSON.stringify({ texts: ['x'.repeat(4_000_000)] }) },
  { name: '8 MB of [', path: '/v1/classify', body: '['.repeat(8_000_000) },
];

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
    s.once('error', rej);
  });
}

/**
 * POST through `agent`: normal clients share one keep-alive pool, each hostile kind has its own, so a socket the
 * server closes after refusing a hostile body is never the one a normal request was sent on (status 0 = no answer).
 */
const guarded = new WeakSet<object>();

function post(url: string, body: string, agent: Agent): Promise<{ status: number; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    let status = 0;
    let settled = false;
    const done = () => {
      if (settled) return;
      settled = true;
      resolve({ status, ms: performance.now() - t0 });
    };
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      status = res.statusCode ?? 0;
      res.resume();
      res.on('end', done);
      res.on('close', done);
      res.on('error', done);
    });
    // the server may answer (413) and close before the whole body is written: the write then fails with EPIPE on a
    // socket the request has already let go of
    req.on('error', done);
    req.on('socket', (socket) => {
      if (guarded.has(socket)) return; // a kept-alive socket carries many requests
      guarded.add(socket);
      socket.on('error', () => undefined); // the request's own 'error' answers it
    });
    req.end(body);
  });
}

const pct = (xs: number[], p: number) => (xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]);

interface PhaseResult {
  phase: string;
  seconds: number;
  max_stall_ms: number;
  normal: { requests: number; per_s: number; p50_ms: number; p99_ms: number; max_ms: number; statuses: Record<string, number> };
  hostile?: Record<string, Record<string, number>>;
}

export async function run(argv: string[]): Promise<number> {
  const o = parseArgs(argv);
  const log = (s: string) => o.json || process.stderr.write(s + '\n');
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', resolve(ROOT, 'bench', 'http.ts'), '--serve-child'], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', TOXSCOPE_DATA_DIR: o.dataDir, TOXSCOPE_LOG_LEVEL: 'warn', ...(o.bundle && { TOXSCOPE_BUNDLE: o.bundle }) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  process.once('exit', () => child.exitCode === null && child.kill('SIGKILL')); // never orphan the server
  if (o.nice !== undefined && child.pid) setPriority(child.pid, o.nice);
  try {
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error(`bench stall: the server exited with ${child.exitCode}`);
      if (await fetch(`${url}/readyz`).then((r) => r.status === 200, () => false)) break;
      if (i > 1200) throw new Error('bench stall: the server did not get ready in 10 minutes');
      await new Promise((r) => setTimeout(r, 500));
    }
    const info = (await (await fetch(`${url}/info`)).json()) as { limits: Record<string, number>; batching: Record<string, number> };
    log(`server ready: limits ${JSON.stringify(info.limits)}, deadline ${info.batching.request_timeout_ms} ms`);

    // The server may close a pooled keep-alive socket after refusing a hostile body: one retry on a fresh one.
    const scrape = () => fetch(`${url}/metrics`).then((r) => r.text());
    const lagMax = async () => Number(/^toxscope_nodejs_eventloop_lag_max_seconds (\S+)/m.exec(await scrape().catch(scrape))?.[1] ?? NaN) * 1000;
    const texts = ['you are an idiot', 'have a nice day', 'Guten Morgen zusammen', 'this is fine, thanks', 'que dia lindo'];

    const phase = async (name: string, hostile: boolean): Promise<PhaseResult> => {
      await lagMax(); // reset the server's histogram
      const end = performance.now() + o.seconds * 1000;
      const lat: number[] = [];
      const statuses: Record<string, number> = {};
      const hostileStatuses: Record<string, Record<string, number>> = {};
      let maxStall = 0;
      const scraper = (async () => {
        while (performance.now() < end) {
          await new Promise((r) => setTimeout(r, 1000));
          maxStall = Math.max(maxStall, await lagMax());
        }
      })();
      const normalAgent = new Agent({ keepAlive: true });
      const normal = async (c: number) => {
        for (let i = c; performance.now() < end; i++) {
          const r = await post(`${url}/v1/classify`, JSON.stringify({ texts: [texts[i % texts.length]] }), normalAgent);
          lat.push(r.ms);
          statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        }
      };
      const attacker = async (h: (typeof HOSTILE)[number]) => {
        const agent = new Agent({ keepAlive: true });
        while (performance.now() < end) {
          const r = await post(`${url}${h.path}`, h.body, agent);
          (hostileStatuses[h.name] ??= {})[r.status] = (hostileStatuses[h.name][r.status] ?? 0) + 1;
        }
        agent.destroy();
      };
      await Promise.all([scraper, ...Array.from({ length: o.clients }, (_, c) => normal(c)), ...(hostile ? HOSTILE.map(attacker) : [])]);
      normalAgent.destroy();
      maxStall = Math.max(maxStall, await lagMax());
      const result: PhaseResult = {
        phase: name,
        seconds: o.seconds,
        max_stall_ms: Math.round(maxStall * 10) / 10,
        normal: { requests: lat.length, per_s: Math.round((lat.length / o.seconds) * 10) / 10, p50_ms: Math.round(pct(lat, 50)), p99_ms: Math.round(pct(lat, 99)), max_ms: Math.round(Math.max(...lat)), statuses },
        ...(hostile && { hostile: hostileStatuses }),
      };
      log(`${name}: longest event-loop stall ${result.max_stall_ms} ms; normal requests ${result.normal.per_s}/s, p50 ${result.normal.p50_ms} ms, p99 ${result.normal.p99_ms} ms, max ${result.normal.max_ms} ms, statuses ${JSON.stringify(statuses)}`);
      if (hostile) for (const [k, v] of Object.entries(hostileStatuses)) log(`  hostile ${k}: ${JSON.stringify(v)}`);
      return result;
    };
    const results = [await phase('normal traffic only', false), await phase('normal traffic + hostile bodies', true)];
    if (o.nice !== undefined) log(`(server run at nice ${o.nice}: the machine is shared with other jobs)`);
    if (o.json) process.stdout.write(JSON.stringify({ bench: 'stall', clients: o.clients, hostile_kinds: HOSTILE.length, server_nice: o.nice ?? null, results }) + '\n');
    return 0;
  } finally {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  }
}

if (process.argv[1] && import.meta.url === `file://${process.argv[1]}`) process.exitCode = await run(process.argv.slice(2));
