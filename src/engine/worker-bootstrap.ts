/**
 * The `eval` source that starts a worker thread on a module of this package: under tsx (npm start, vitest) the
 * module is TypeScript, so the worker registers tsx's loader before importing it; built JavaScript is imported
 * as is. (src/engine/engine-worker.ts has its own copy of this, kept as it is while another change is in flight there.)
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

export function workerBootstrap(moduleUrl: string): string {
  if (!moduleUrl.endsWith('.ts')) return `import(${JSON.stringify(moduleUrl)})`;
  const tsx = createRequire(moduleUrl).resolve('tsx/esm/api').replace(/index\.cjs$/, 'index.mjs');
  return `import(${JSON.stringify(pathToFileURL(tsx).href)}).then((m) => { m.register(); return import(${JSON.stringify(moduleUrl)}); })`;
}
