/**
 * The embedded PGlite on a worker thread of its own.
 *
 * PGlite is Postgres compiled to WebAssembly: every query, its creation (initdb: seconds) and its migrations run
 * synchronously on the thread that owns it. On the main thread that stalls HTTP (measured: 244 ms longest
 * event-loop stall under normal traffic with PGlite, 27 ms with Postgres). Here the database lives in a
 * worker_thread and the main thread holds `PgliteWorkerClient`, which speaks PGlite's query interface as far as
 * drizzle-orm/pglite uses it:
 *
 *   query(sql, params, { rowMode, parsers })   parsers: drizzle passes identity parsers (timestamps, dates,
 *                                              intervals, numeric[] ... stay strings); their type ids travel,
 *                                              the worker installs the same identity parsers
 *   exec(sql)                                  several statements, no parameters
 *   transaction(async (tx) => ...)             tx.query / tx.exec / tx.rollback(); the worker holds PGlite's
 *                                              transaction open until the callback here settles
 *   close()                                    waits for the work in flight, closes PGlite, ends the worker
 *
 * Creating the database (atomically: in `<location>.init`, renamed into place) and migrating it also run in the
 * worker. A worker that dies fails every call in flight and every later one with an error that has no SQLSTATE
 * (transient: the write queue keeps its rows and retries).
 *
 * Under tsx (npm start, vitest) the worker registers tsx's loader before importing this file again.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { PGlite, Results, Transaction } from '@electric-sql/pglite';
import { workerBootstrap } from '../util/worker-bootstrap.js';

interface OpenRequest {
  toxscopePglite: true;
  /** 'memory://' or a directory */
  location: string;
}

type ToWorker =
  | { type: 'query'; id: number; sql: string; params: unknown[]; rowMode?: 'array' | 'object'; rawTypes: number[]; tx?: number }
  | { type: 'exec'; id: number; sql: string; tx?: number }
  | { type: 'begin'; id: number }
  | { type: 'end'; id: number; tx: number; commit: boolean }
  | { type: 'migrate'; id: number; migrationsFolder: string }
  | { type: 'close'; id: number };

type FromWorker =
  | { type: 'ready' }
  | { type: 'result'; id: number; value: unknown }
  | { type: 'error'; id: number | null; error: SerializedDbError };

/** What crosses the thread boundary of a database error: code and message, never the statement or its parameters. */
interface SerializedDbError {
  name: string;
  message: string;
  code?: string;
  severity?: string;
  table?: string;
  column?: string;
  constraint?: string;
}

function serializeError(e: unknown): SerializedDbError {
  const o = (e ?? {}) as Record<string, unknown>;
  const out: SerializedDbError = { name: typeof o.name === 'string' ? o.name : 'Error', message: e instanceof Error ? e.message : String(e) };
  for (const key of ['code', 'severity', 'table', 'column', 'constraint'] as const) if (typeof o[key] === 'string') out[key] = o[key] as string;
  return out;
}

/** An error of the embedded database as the main thread sees it (describeDbError reads code and message). */
export class PgliteWorkerError extends Error {
  readonly code?: string;
  readonly severity?: string;
  readonly table?: string;
  readonly column?: string;
  readonly constraint?: string;

  constructor(e: SerializedDbError) {
    super(e.message);
    this.name = e.name === 'Error' ? 'PgliteWorkerError' : e.name;
    Object.assign(this, { code: e.code, severity: e.severity, table: e.table, column: e.column, constraint: e.constraint });
  }
}

type QueryOptions = { rowMode?: 'array' | 'object'; parsers?: Record<number, unknown> };

/** What a transaction callback gets: the same query interface, inside the transaction. */
export interface PgliteWorkerTransaction {
  query<T>(sql: string, params?: unknown[], options?: QueryOptions): Promise<Results<T>>;
  exec(sql: string): Promise<Results[]>;
  rollback(): Promise<void>;
  readonly closed: boolean;
}

export class PgliteWorkerClient {
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: unknown): void }>();
  private seq = 0;
  private dead: Error | null = null;
  private closing: Promise<void> | null = null;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (m: FromWorker) => {
      if (m.type === 'ready' || m.id === null) return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.type === 'result') p.resolve(m.value);
      else p.reject(new PgliteWorkerError(m.error));
    });
    const fail = (why: string) => {
      this.dead ??= new Error(why);
      for (const p of this.pending.values()) p.reject(this.dead);
      this.pending.clear();
    };
    worker.on('error', (e) => fail(`the embedded database's worker crashed: ${e.message}`));
    worker.on('exit', (code) => fail(this.closing ? 'the embedded database is closed' : `the embedded database's worker exited (code ${code})`));
  }

  /**
   * Start the worker and open (creating when new) the embedded database at `location` ('memory://' or a
   * directory) in it. Resolves once it is open; rejects with the reason when it cannot be.
   */
  static async open(location: string): Promise<PgliteWorkerClient> {
    const worker = new Worker(workerBootstrap(import.meta.url), { eval: true, workerData: { toxscopePglite: true, location } satisfies OpenRequest });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (m: FromWorker) => {
        if (m.type === 'ready') done(resolve);
        else if (m.type === 'error' && m.id === null) done(() => reject(new PgliteWorkerError(m.error)));
      };
      const onError = (e: Error) => done(() => reject(new Error(`the embedded database's worker failed to start: ${e.message}`)));
      const onExit = (code: number) => done(() => reject(new Error(`the embedded database's worker exited while opening (code ${code})`)));
      const done = (f: () => void) => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        f();
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    }).catch(async (e) => {
      await worker.terminate();
      throw e;
    });
    return new PgliteWorkerClient(worker);
  }

  /** Why the database cannot answer (its worker died), or null. */
  failure(): string | null {
    return this.dead && !this.closing ? this.dead.message : null;
  }

  query<T>(sql: string, params: unknown[] = [], options: QueryOptions = {}): Promise<Results<T>> {
    return this.call({ type: 'query', sql, params, rowMode: options.rowMode, rawTypes: rawTypes(options) }) as Promise<Results<T>>;
  }

  exec(sql: string): Promise<Results[]> {
    return this.call({ type: 'exec', sql }) as Promise<Results[]>;
  }

  /** Runs `callback` inside one transaction: committed when it resolves, rolled back when it throws or calls rollback(). */
  async transaction<T>(callback: (tx: PgliteWorkerTransaction) => Promise<T>): Promise<T> {
    const txId = (await this.call({ type: 'begin' })) as number;
    let rolledBack = false;
    let closed = false;
    const tx: PgliteWorkerTransaction = {
      query: <R>(sql: string, params: unknown[] = [], options: QueryOptions = {}) =>
        this.call({ type: 'query', sql, params, rowMode: options.rowMode, rawTypes: rawTypes(options), tx: txId }) as Promise<Results<R>>,
      exec: (sql: string) => this.call({ type: 'exec', sql, tx: txId }) as Promise<Results[]>,
      rollback: async () => {
        rolledBack = true;
        throw new Error('transaction rolled back');
      },
      get closed() {
        return closed;
      },
    };
    let result: T;
    try {
      result = await callback(tx);
    } catch (e) {
      closed = true;
      await this.call({ type: 'end', tx: txId, commit: false }).catch(() => undefined);
      if (rolledBack && (e as Error)?.message === 'transaction rolled back') return undefined as T;
      throw e;
    }
    closed = true;
    await this.call({ type: 'end', tx: txId, commit: true });
    return result;
  }

  /** Applies the drizzle-kit migrations of `migrationsFolder` (in the worker). */
  migrate(migrationsFolder: string): Promise<void> {
    return this.call({ type: 'migrate', migrationsFolder }) as Promise<void>;
  }

  /** Finishes the work in flight, closes the database, ends the worker. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.dead) return;
      const exited = new Promise<void>((r) => this.worker.once('exit', () => r()));
      const id = ++this.seq;
      this.worker.postMessage({ type: 'close', id } satisfies ToWorker);
      await exited;
    })();
    return this.closing;
  }

  private call(message: DistributiveOmit<ToWorker, 'id'>): Promise<unknown> {
    if (this.dead) return Promise.reject(this.dead);
    if (this.closing) return Promise.reject(new Error('the embedded database is closed'));
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...message, id } as ToWorker);
    });
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** The type ids given a parser: drizzle's are all identity (keep the text), and a function cannot cross threads. */
function rawTypes(options: QueryOptions): number[] {
  const parsers = options.parsers ?? {};
  for (const [type, parse] of Object.entries(parsers)) {
    if (typeof parse === 'function' && (parse as (v: string) => unknown)('x') !== 'x')
      throw new Error(`the embedded database's worker supports identity parsers only (type ${type})`);
  }
  return Object.keys(parsers).map(Number);
}

/**
 * A new embedded database is created in `<location>.init` and renamed into place once complete, so a crash
 * (kill -9) during its creation leaves no half-initialised database that would never open: the next start
 * begins again.
 */
async function initPgliteAtomically(PGliteClass: typeof PGlite, location: string): Promise<void> {
  if (existsSync(join(location, 'PG_VERSION'))) return;
  if (existsSync(location) && readdirSync(location).length > 0) {
    throw new Error(`${location} is not an embedded database (no PG_VERSION) and is not empty: move it away`);
  }
  const init = `${location}.init`;
  rmSync(init, { recursive: true, force: true }); // what a crash during an earlier creation left
  mkdirSync(init, { recursive: true });
  const fresh = await PGliteClass.create(init);
  await fresh.close();
  rmSync(location, { recursive: true, force: true }); // an empty directory
  renameSync(init, location);
}

async function servePglite(): Promise<void> {
  const port = parentPort!;
  const send = (m: FromWorker) => port.postMessage(m);
  const { location } = workerData as OpenRequest;
  const { PGlite } = await import('@electric-sql/pglite');
  let db: PGlite;
  try {
    if (location !== 'memory://') await initPgliteAtomically(PGlite, location);
    db = await PGlite.create(location);
  } catch (e) {
    send({ type: 'error', id: null, error: serializeError(e) });
    process.exit(1);
  }
  const identity = (v: string) => v;
  const transactions = new Map<number, { tx: Transaction; end(commit: boolean): void; finished(): Promise<void> }>();
  let nextTx = 0;
  const inFlight = new Set<Promise<unknown>>();
  const target = (tx: number | undefined) => {
    if (tx === undefined) return db;
    const open = transactions.get(tx);
    if (!open) throw new Error(`transaction ${tx} is not open`);
    return open.tx;
  };

  const handle = async (m: ToWorker): Promise<unknown> => {
    switch (m.type) {
      case 'query':
        return target(m.tx).query(m.sql, m.params, { rowMode: m.rowMode, parsers: Object.fromEntries(m.rawTypes.map((t) => [t, identity])) });
      case 'exec':
        return target(m.tx).exec(m.sql);
      case 'begin': {
        const txId = ++nextTx;
        // resolves with the transaction's id once PGlite has begun it; the transaction stays open until 'end'
        return new Promise<number>((begun, failed) => {
          const finished = db.transaction(async (tx) => {
            const commit = await new Promise<boolean>((end) => {
              transactions.set(txId, { tx, end, finished: () => finished });
              begun(txId);
            });
            if (!commit) await tx.rollback();
          });
          finished.catch(failed); // before it began (after, 'end' reports it)
        });
      }
      case 'end': {
        const open = transactions.get(m.tx);
        if (!open) throw new Error(`transaction ${m.tx} is not open`);
        open.end(m.commit);
        try {
          await open.finished(); // PGlite's transaction() settles after COMMIT / ROLLBACK
        } finally {
          transactions.delete(m.tx);
        }
        return null;
      }
      case 'migrate': {
        const { drizzle } = await import('drizzle-orm/pglite');
        const { migrate } = await import('drizzle-orm/pglite/migrator');
        await migrate(drizzle({ client: db }), { migrationsFolder: m.migrationsFolder });
        return null;
      }
      case 'close':
        for (const open of transactions.values()) open.end(false); // a transaction left open is rolled back
        await Promise.allSettled([...inFlight, ...[...transactions.values()].map((t) => t.finished())]);
        await db.close();
        port.close();
        return null;
    }
  };

  port.on('message', (m: ToWorker) => {
    const done = handle(m).then(
      (value) => m.type !== 'close' && send({ type: 'result', id: m.id, value }),
      (e) => send({ type: 'error', id: m.id, error: serializeError(e) }),
    );
    if (m.type !== 'close') {
      inFlight.add(done);
      void done.finally(() => inFlight.delete(done));
    }
  });
  send({ type: 'ready' });
}

if (!isMainThread && (workerData as { toxscopePglite?: boolean } | null)?.toxscopePglite) void servePglite();
