/** The `--bundle` flag shared by eval and discover: a bundle directory, or the demo bundle when absent. */
import { join } from 'node:path';
import { DEMO_NOTICE, ensureDemoBundle } from '../bundle/demo/demo-bundle.js';
import { jsonHashCache } from '../bundle/file-hash.js';
import { readBundle } from '../bundle/load.js';
import { openBundle, type RunnableBundle } from '../bundle/open.js';
import type { Provider } from '../runtime/session.js';
import type { PrecisionSetting } from '../config.js';
import { cliEnvironment } from './environment.js';
import type { CliIO } from './main.js';
import { progressBar } from './progress.js';

export async function openBundleFlag(bundleFlag: string | undefined, dataDirFlag: unknown, provider: Provider, threads: number | undefined, io: CliIO, precision?: PrecisionSetting): Promise<RunnableBundle> {
  const { dataDir, modelDirs } = cliEnvironment(dataDirFlag, io);
  const progress = progressBar(io.stderr);
  const log = (line: string) => io.stderr(`${line}\n`);
  const dir = bundleFlag ?? (await ensureDemoBundle({ dataDir, provider, threads, log, onProgress: progress.update }));
  progress.done();
  const bundle = readBundle(dir, { hashCache: jsonHashCache(join(dataDir, 'hash-cache.json')), modelDirs });
  if (bundle.manifest.synthetic_backbone) io.stderr(`${bundle.manifest.notice ?? DEMO_NOTICE}\n`);
  return openBundle(bundle, { cacheDir: join(dataDir, 'graph-cache'), provider, threads, precision, warn: log });
}
