/**
 * Database fixtures for tests: an in-memory PGlite (start it once per test file: 2-3 s and ~650 MiB) and,
 * when DATABASE_URL is set, a fresh database on that real Postgres server per test file, dropped afterwards.
 */
import { randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import postgres from 'postgres';
import { createDb, type CreateDbOptions, type DbHandle } from '../../src/db/client.js';
import type { NewPrediction } from '../../src/db/schema.js';

export const DATABASE_URL = process.env.DATABASE_URL || undefined;

/** The drivers every database test runs against: PGlite always, the real server when DATABASE_URL is set. */
export const DRIVERS: Array<'pglite' | 'postgres'> = DATABASE_URL ? ['pglite', 'postgres'] : ['pglite'];

export interface FreshDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

/** CREATE DATABASE toxscope_test_<random> on DATABASE_URL's server; drop() removes it (WITH FORCE). */
export async function freshPostgresDatabase(prefix = 'toxscope_test'): Promise<FreshDatabase> {
  if (!DATABASE_URL) throw new Error('freshPostgresDatabase needs DATABASE_URL');
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = postgres(DATABASE_URL, { max: 1, onnotice: () => undefined });
  try {
    await admin.unsafe(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(DATABASE_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    async drop() {
      const a = postgres(DATABASE_URL!, { max: 1, onnotice: () => undefined });
      try {
        await a.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await a.end();
      }
    },
  };
}

export interface TestDb {
  driver: 'pglite' | 'postgres';
  handle: DbHandle;
  /** Another handle on the same database (a second "replica"): a new pool for postgres, the same PGlite. */
  openAnother(): Promise<DbHandle>;
  dispose(): Promise<void>;
}

/** A migrated database for one test file on the given driver. */
export async function openTestDb(driver: 'pglite' | 'postgres', options: Partial<CreateDbOptions> = {}): Promise<TestDb> {
  if (driver === 'pglite') {
    const handle = await createDb({ ...options, dataDir: 'memory://' });
    return {
      driver,
      handle,
      // PGlite is single-process: a second replica is a second repository over the same instance.
      openAnother: async () => ({ ...handle, close: async () => undefined }),
      dispose: () => handle.close(),
    };
  }
  const fresh = await freshPostgresDatabase();
  const handles: DbHandle[] = [];
  const open = async () => {
    const h = await createDb({ ...options, url: fresh.url });
    handles.push(h);
    return h;
  };
  const handle = await open();
  return {
    driver,
    handle,
    openAnother: open,
    async dispose() {
      for (const h of handles) await h.close().catch(() => undefined);
      await fresh.drop();
    },
  };
}

let predictionCounter = 0;

/** A valid prediction row; ids are unique within the test process unless given. */
export function predictionRow(overrides: Partial<NewPrediction> = {}): NewPrediction {
  predictionCounter += 1;
  return {
    id: `00000000-0000-4000-8000-${String(predictionCounter).padStart(12, '0')}`,
    requestId: `req-${predictionCounter}`,
    createdAt: new Date('2025-03-01T11:00:00Z'),
    language: 'en',
    languageSource: 'detected',
    score: 0.5,
    threshold: 0.5,
    label: false,
    bundleVersion: 'test-bundle',
    textSha256: 'f'.repeat(64),
    ...overrides,
  };
}

/**
 * A TCP proxy in front of a server, to make it unreachable on demand: cut() refuses new connections and
 * resets the open ones (what a crashed or partitioned server looks like); restore() listens again.
 */
export interface TcpProxy {
  port: number;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function tcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer((client) => {
        const upstream = connect(targetPort, targetHost);
        for (const sock of [client, upstream]) {
          sockets.add(sock);
          sock.on('close', () => sockets.delete(sock));
          sock.on('error', () => undefined);
        }
        client.pipe(upstream);
        upstream.pipe(client);
        const end = () => {
          client.destroy();
          upstream.destroy();
        };
        client.on('close', end);
        upstream.on('close', end);
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        port = (s.address() as AddressInfo).port;
        server = s;
        resolve();
      });
    });
  const stop = async () => {
    const s = server;
    server = undefined;
    for (const sock of sockets) sock.resetAndDestroy();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await listen();
  return { port, cut: stop, restore: listen, close: stop };
}
