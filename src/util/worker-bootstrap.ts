/**
 * The `eval` source that starts a worker thread on a module of this package: under tsx (npm start, vitest) the
 * module is TypeScript, so the worker registers tsx's loader before importing it; built JavaScript is imported
 * as is. Every worker thread (src/engine/engine-worker.ts, text-worker.ts, src/db/pglite-worker.ts) starts through here.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { ToxScopeError } from '../errors.js';

export function workerBootstrap(moduleUrl: string): string {
  if (!moduleUrl.endsWith('.ts')) return `import(${JSON.stringify(moduleUrl)})`;
  const tsx = createRequire(moduleUrl).resolve('tsx/esm/api').replace(/index\.cjs$/, 'index.mjs');
  return `import(${JSON.stringify(pathToFileURL(tsx).href)}).then((m) => { m.register(); return import(${JSON.stringify(moduleUrl)}); })`;
}

/** What a starting worker's message means: started (value), failed (error), or neither yet (undefined). */
export type StartMessage<T> = { value: T } | { error: Error } | undefined;

/**
 * Waits for a new worker to say it started: each message goes through `settle`; an error event or an exit first
 * fails with 'unavailable' naming `what`. On any failure the worker is terminated before the rejection.
 */
export function workerStarted<M, T>(worker: Worker, what: string, settle: (m: M) => StartMessage<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onMessage = (m: M) => {
      const r = settle(m);
      if (r) done(() => ('error' in r ? reject(r.error) : resolve(r.value)));
    };
    const onError = (e: Error) => done(() => reject(new ToxScopeError('unavailable', `${what} failed to start: ${e.message}`)));
    const onExit = (code: number) => done(() => reject(new ToxScopeError('unavailable', `${what} exited while starting (code ${code})`)));
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
}
