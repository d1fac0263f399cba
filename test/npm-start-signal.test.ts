/**
 * `npm start` stops on a signal sent to npm itself (what a process manager or a terminal's Ctrl-C does): the
 * service inside drains and exits instead of being orphaned and serving on.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/goldens.js';
import { trainServeBundle } from './helpers/serve-bundle.js';

const root = mkdtempSync(join(tmpdir(), 'toxscope-npm-start-'));
const bundleDir = join(root, 'bundle');
const started: ChildProcess[] = [];

beforeAll(async () => {
  await trainServeBundle(bundleDir, 'npm-start-test', join(root, 'cache'));
}, 120_000);
afterAll(() => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

/** Processes whose parent is `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return /^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${d}/status`, 'utf8'))?.[1] === String(pid);
      } catch {
        return false; // exited while we looked
      }
    })
    .map(Number);
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function startNpm(dataDir: string): Promise<{ npm: ChildProcess; url: string; output: () => string; exited: Promise<number | null> }> {
  const npm = spawn('npm', ['start'], {
    cwd: repoRoot,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', TOXSCOPE_BUNDLE: bundleDir, TOXSCOPE_DATA_DIR: dataDir, TOXSCOPE_THREADS: '1', TOXSCOPE_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(npm);
  let out = '';
  npm.stdout!.on('data', (d) => (out += d));
  npm.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => npm.once('exit', (code) => r(code)));
  const deadline = Date.now() + 90_000;
  let url: string | undefined;
  while (!url && Date.now() < deadline) {
    url = /listening on (http:\/\/\S+)/.exec(out)?.[1];
    if (!url) await new Promise((r) => setTimeout(r, 100));
  }
  if (!url) throw new Error(`npm start did not listen:\n${out}`);
  while (Date.now() < deadline && (await fetch(`${url}/readyz`).then((r) => r.status, () => 0)) !== 200) await new Promise((r) => setTimeout(r, 200));
  return { npm, url, output: () => out, exited };
}

describe('npm start', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`stops cleanly on ${signal} sent to the npm process: the service drains, exits 0, and nothing keeps serving`, async () => {
      const { npm, url, output, exited } = await startNpm(join(root, `data-${signal}`));
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      const service = childrenOf(npm.pid!);
      expect(service.length).toBeGreaterThan(0); // npm runs the service as its child
      npm.kill(signal);
      const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 30_000))]);
      expect(code).toBe(0);
      expect(output()).toContain(`"msg":"shutting down: finishing queued requests","reason":"${signal}"`);
      expect(output()).toContain('"msg":"stopped"');
      for (const pid of service) expect(alive(pid), `service process ${pid} still running`).toBe(false);
      await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    }, 150_000);
  }
});
