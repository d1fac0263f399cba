/**
 * A private nats-server for tests that stop it: never the shared one on 127.0.0.1:4222 (other tests use it).
 * JetStream on (-js) with its own store directory, on a free port; stop() is SIGKILL (a crashed server), and
 * start() again comes back on the same port, with or without JetStream, with its old store or a fresh one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const NATS_SERVER_BIN = process.env.TOXSCOPE_TEST_NATS_SERVER || '/usr/sbin/nats-server';
export const natsServerInstalled = existsSync(NATS_SERVER_BIN);

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const answers = (port: number) =>
  new Promise<boolean>((resolve) => {
    const sock = tcpConnect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });

export interface PrivateNatsServer {
  url: string;
  port: number;
  /** (re)start on the same port; jetstream false: a server without JetStream; freshStore: lose the old state */
  start(opts?: { jetstream?: boolean; freshStore?: boolean }): Promise<void>;
  /** SIGKILL, and wait until the port refuses */
  kill(): Promise<void>;
  /** kill, and remove every store directory */
  dispose(): Promise<void>;
}

export async function privateNatsServer(): Promise<PrivateNatsServer> {
  const root = mkdtempSync(join(tmpdir(), 'toxscope-nats-'));
  const port = await freePort();
  let proc: ChildProcess | undefined;
  let stores = 0;
  let store = join(root, `store-${stores}`);
  let out = '';
  const server: PrivateNatsServer = {
    url: `nats://127.0.0.1:${port}`,
    port,
    async start({ jetstream = true, freshStore = false } = {}) {
      if (freshStore) store = join(root, `store-${++stores}`);
      const args = ['-a', '127.0.0.1', '-p', String(port), ...(jetstream ? ['-js', '-sd', store] : [])];
      out = '';
      proc = spawn(NATS_SERVER_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      proc.stdout!.on('data', (d) => (out += d));
      proc.stderr!.on('data', (d) => (out += d));
      for (let i = 0; i < 300; i++) {
        if (proc.exitCode !== null) throw new Error(`nats-server exited (${proc.exitCode}):\n${out}`);
        if (/Server is ready/.test(out) && (await answers(port))) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`nats-server did not start:\n${out}`);
    },
    async kill() {
      const p = proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await exited;
      while (await answers(port)) await new Promise((r) => setTimeout(r, 50));
    },
    async dispose() {
      await server.kill();
      rmSync(root, { recursive: true, force: true });
    },
  };
  return server;
}
