/** Shared set-up of the demo-bundle benchmarks: the demo bundle (built when missing), opened on CPU. */
import { join, resolve } from 'node:path';
import { ensureDemoBundle } from '../src/bundle/demo/demo-bundle.js';
import { jsonHashCache } from '../src/bundle/file-hash.js';
import { readBundle } from '../src/bundle/load.js';
import { openBundle, type RunnableBundle } from '../src/bundle/open.js';
import { progressBar } from '../src/cli/progress.js';
import { parseChoice } from '../src/cli/args.js';
import { POOLINGS } from '../src/head/head.js';

export function flag(argv: string[], name: string, dflt: string): string {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : dflt;
}

export async function openDemo(argv: string[]): Promise<RunnableBundle> {
  const dataDir = resolve(flag(argv, 'data-dir', '.toxscope'));
  const threads = argv.includes('--threads') ? Number(flag(argv, 'threads', '1')) : undefined;
  const progress = progressBar((s) => process.stderr.write(s));
  // --pooling: a variant of the demo trained with another pooling beside the demo's own (e.g. combined)
  const pooling = argv.includes('--pooling') ? parseChoice(flag(argv, 'pooling', ''), 'pooling', POOLINGS) : undefined;
  const dir = argv.includes('--bundle') ? flag(argv, 'bundle', '') : await ensureDemoBundle({ dataDir, threads, pooling, log: (l) => process.stderr.write(`${l}\n`), onProgress: progress.update });
  progress.done();
  const bundle = readBundle(dir, { hashCache: jsonHashCache(join(dataDir, 'hash-cache.json')) });
  return openBundle(bundle, { cacheDir: join(dataDir, 'graph-cache'), threads });
}

export const f3 = (v: number | null | undefined) => (v === null || v === undefined ? '  n/a' : v.toFixed(3));
