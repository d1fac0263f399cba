/**
 * The service as a real child process (`toxscope serve` through bin/toxscope.js), for tests that crash it
 * with a real SIGKILL. The environment is built here, not inherited: DATABASE_URL and TOXSCOPE_* of the test
 * run never leak into the child.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './goldens.js';

export interface ServiceProcess {
  url: string;
  child: ChildProcess;
  /** what the process wrote to stderr so far (its JSON log lines) */
  log(): string;
  /** SIGKILL, and wait until the process is gone */
  kill9(): Promise<void>;
  /** SIGTERM (graceful shutdown), and wait for the exit code */
  stop(): Promise<number | null>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function spawnService(env: Record<string, string>, timeoutMs = 150_000): Promise<ServiceProcess> {
  const base: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'NODE_OPTIONS']) if (process.env[k] !== undefined) base[k] = process.env[k]!;
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'toxscope.js'), 'serve'], {
    cwd: repoRoot,
    env: { ...base, PORT: '0', HOST: '127.0.0.1', TOXSCOPE_THREADS: '1', TOXSCOPE_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let gone = false;
  void exited.then(() => (gone = true));

  const deadline = Date.now() + timeoutMs;
  let url: string | undefined;
  while (!url) {
    if (gone) throw new Error(`the service exited before listening:\n${stderr}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the service did not listen within ${timeoutMs} ms:\n${stderr}`);
    }
    url = /listening on (http:\/\/[^\s]+)/.exec(stderr)?.[1];
    if (!url) await sleep(50);
  }
  // ready: the bundle is loaded and warm
  for (;;) {
    if (gone) throw new Error(`the service exited before it was ready:\n${stderr}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the service was not ready within ${timeoutMs} ms:\n${stderr}`);
    }
    const r = await fetch(`${url}/readyz`).catch(() => undefined);
    if (r?.status === 200) break;
    await sleep(100);
  }
  return {
    url,
    child,
    log: () => stderr,
    async kill9() {
      if (!gone) child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (!gone) child.kill('SIGTERM');
      return exited;
    },
  };
}
