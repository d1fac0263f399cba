/**
 * readBundle (src/bundle/load.ts) on a worker thread of its own, so that a reload never holds the event loop:
 * hashing gigabytes of weights, parsing the SAE file and decoding the head all happen off the main thread,
 * and the service keeps answering with the old bundle meanwhile.
 *
 * The worker is also a fence around hostile files: its heap is capped (a parser that explodes past the budgets
 * in src/model/artifact-limits.ts kills the worker, not the service) and it has a deadline. The SAE's arrays
 * come back transferred (not copied); the head and rule come back as their JSON and are rebuilt here.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { formatError, ToxScopeError, type ErrorKind } from '../errors.js';
import { DiscoveryRule, type DiscoveryRuleJson } from '../head/discovery.js';
import { Head, type HeadJson } from '../head/head.js';
import { FeatureLabels } from '../head/feature-labels.js';
import type { TopKSae } from '../model/sae/types.js';
import type { Bundle } from './load.js';

export interface ReadOffThreadOptions {
  modelDirs?: readonly string[];
  /** JSON file memoising content hashes (src/bundle/file-hash.ts jsonHashCache) */
  hashCachePath?: string;
  /** give up after this long (default 15 minutes: hashing tens of GB of weights takes minutes) */
  timeoutMs?: number;
  /** the worker's heap (V8 old generation; typed arrays such as the SAE's are outside it), default 2048 MB */
  maxHeapMb?: number;
}

interface Request {
  toxscopeBundleReader: true;
  dir: string;
  modelDirs?: readonly string[];
  hashCachePath?: string;
}
type Reply =
  | {
      ok: true; dir: string; manifest: Bundle['manifest']; head: HeadJson; rule: DiscoveryRuleJson | null; modelDir: string; saePath: string; sae: TopKSae;
      attributes: Record<string, HeadJson>; openaiCategories: Record<string, string>; featureLabels: unknown;
    }
  | { ok: false; kind: ErrorKind | null; name: string; message: string };

export function readBundleOffThread(dir: string, opts: ReadOffThreadOptions = {}): Promise<Bundle> {
  const data: Request = { toxscopeBundleReader: true, dir, modelDirs: opts.modelDirs, hashCachePath: opts.hashCachePath };
  const heapMb = opts.maxHeapMb ?? 2048;
  const timeoutMs = opts.timeoutMs ?? 15 * 60_000;
  const worker = new Worker(bootstrap(), { eval: true, workerData: data, resourceLimits: { maxOldGenerationSizeMb: heapMb } });
  return new Promise<Bundle>((resolve, reject) => {
    let settled = false;
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      f();
    };
    const timer = setTimeout(
      () => settle(() => reject(formatError(`${dir}: reading the bundle took longer than ${Math.round(timeoutMs / 1000)} s: refused`))),
      timeoutMs,
    );
    worker.on('message', (m: Reply) =>
      settle(() => {
        if (!m.ok) return reject(m.kind ? new ToxScopeError(m.kind, m.message) : formatError(`${dir}: reading the bundle failed (${m.name}: ${m.message.slice(0, 200)})`));
        try {
          const head = Head.fromJSON(m.head, `${m.dir}: head`);
          const rule = m.rule ? DiscoveryRule.fromJSON(m.rule, `${m.dir}: rule`) : null;
          const attributes = Object.fromEntries(Object.entries(m.attributes).map(([name, j]) => [name, Head.fromJSON(j, `${m.dir}: attributes.${name}`)]));
          const featureLabels = m.featureLabels === null ? null : FeatureLabels.fromJSON(m.featureLabels, `${m.dir}: feature labels`);
          resolve({ dir: m.dir, manifest: m.manifest, head, rule, attributes, openaiCategories: m.openaiCategories, featureLabels, modelDir: m.modelDir, saePath: m.saePath, sae: m.sae });
        } catch (e) {
          reject(e);
        }
      }),
    );
    worker.on('error', (e: Error & { code?: string }) =>
      settle(() =>
        reject(
          e.code === 'ERR_WORKER_OUT_OF_MEMORY'
            ? formatError(`${dir}: reading the bundle needed more than its ${heapMb} MB heap: refused (hostile or corrupt files?)`)
            : new ToxScopeError('internal', `the bundle reader failed: ${e.message}`),
        ),
      ),
    );
    worker.on('exit', (code) => settle(() => reject(new ToxScopeError('internal', `the bundle reader exited (code ${code}) before answering`))));
  });
}

/** Worker entry: register tsx when this file is TypeScript, then import it (which runs serveRead below). */
function bootstrap(): string {
  const self = import.meta.url;
  if (!self.endsWith('.ts')) return `import(${JSON.stringify(self)})`;
  const tsx = createRequire(self).resolve('tsx/esm/api').replace(/index\.cjs$/, 'index.mjs');
  return `import(${JSON.stringify(pathToFileURL(tsx).href)}).then((m) => { m.register(); return import(${JSON.stringify(self)}); })`;
}

async function serveRead(req: Request): Promise<void> {
  const port = parentPort!;
  try {
    const [{ readBundle }, { jsonHashCache }] = await Promise.all([import('./load.js'), import('./file-hash.js')]);
    const b = readBundle(req.dir, { modelDirs: req.modelDirs, hashCache: req.hashCachePath ? jsonHashCache(req.hashCachePath) : undefined });
    const reply: Reply = {
      ok: true, dir: b.dir, manifest: b.manifest, head: b.head.toJSON(), rule: b.rule?.toJSON() ?? null, modelDir: b.modelDir, saePath: b.saePath, sae: b.sae,
      attributes: Object.fromEntries(Object.entries(b.attributes).map(([name, h]) => [name, h.toJSON()])), openaiCategories: b.openaiCategories,
      featureLabels: b.featureLabels?.toJSON() ?? null,
    };
    port.postMessage(reply, saeBuffers(b.sae));
  } catch (e) {
    const err = e as Error;
    const reply: Reply = { ok: false, kind: e instanceof ToxScopeError ? e.kind : null, name: err?.name ?? 'Error', message: err?.message ?? String(e) };
    port.postMessage(reply);
  }
}

if (!isMainThread && (workerData as Request | null)?.toxscopeBundleReader) void serveRead(workerData as Request);

/** The SAE arrays that own their whole buffer (transferred; the others are copied by postMessage). */
function saeBuffers(sae: TopKSae): ArrayBuffer[] {
  const arrays = [sae.wEnc, sae.bEnc, sae.inputBias, sae.wDec, sae.bDec].filter((a): a is Float32Array => a !== null);
  const owned = arrays.filter((a) => a.byteOffset === 0 && a.byteLength === a.buffer.byteLength && a.buffer instanceof ArrayBuffer);
  return [...new Set(owned.map((a) => a.buffer as ArrayBuffer))];
}
