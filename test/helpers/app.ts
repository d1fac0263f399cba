/**
 * A real service on a tiny bundle, for HTTP tests: the golden tiny Qwen3 checkpoint (4 layers, hidden 64),
 * the golden SAELens TopK SAE at layer 2 (d_sae 512, k 16), the real Qwen3 tokenizer, fastText language
 * identification, and a head TRAINED here (src/head/train.ts) on the engine's own features of a few
 * hundred labeled posts from ../shared/data/train. Nothing is faked: scores come from the forward pass, run
 * on a worker thread as in production (src/engine/engine-worker.ts).
 *
 * A tiny bundle directory holds head.json (+ pointers to the model and SAE), so reload tests can point at
 * good and broken bundles.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type Config } from '../../src/config.js';
import { Classifier } from '../../src/engine/classifier.js';
import { FeatureAccumulator } from '../../src/engine/features.js';
import { WorkerEngine } from '../../src/engine/engine-worker.js';
import { ForwardEngine } from '../../src/engine/forward-engine.js';
import { TextWorker } from '../../src/engine/text-worker.js';
import { loadTokenizer, type Tokenizer } from '../../src/engine/tokenizer.js';
import { formatError } from '../../src/errors.js';
import { Head } from '../../src/head/head.js';
import type { TextFeatures } from '../../src/head/text-features.js';
import { trainHead } from '../../src/head/train.js';
import { ATTRIBUTES_FILE, attributesFromJSON, attributesToJSON } from '../../src/bundle/attributes.js';
import { fixtureAttributes } from '../../src/bundle/demo/fixture-attributes.js';
import { createApp } from '../../src/http/app.js';
import { ClassifierHost, type EngineRestartOptions, type LoadedBundle } from '../../src/service/classifier-host.js';
import type { ServiceDeps } from '../../src/service/deps.js';
import { createMetrics, type Metrics } from '../../src/metrics/metrics.js';
import { loadSae } from '../../src/model/sae/load.js';
import type { TopKSae } from '../../src/model/sae/types.js';
import type { EngineQuarantine } from '../../src/engine/quarantine.js';
import { crashingOn, type PoisonTally } from './crashing-engine.js';
import { goldenCheckpointDir, goldensDir } from './goldens.js';

export const TINY_SAE_DIR = join(goldensDir, 'sae-saelens-L2');
export const TINY_LAYER = 2;
export const ADMIN_TOKEN = 'test-admin-token-0123456789';

/** Small limits so limit tests stay fast; everything else at its default. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({
    env: {
      TOXSCOPE_MAX_TEXTS: '64',
      TOXSCOPE_MAX_CHARS: '20000',
      TOXSCOPE_MAX_TOKENS: '8192',
      TOXSCOPE_WINDOW_TOKENS: '64',
      TOXSCOPE_WINDOW_OVERLAP: '8',
      TOXSCOPE_MAX_BATCH_TOKENS: '2048',
      TOXSCOPE_MAX_WAIT_MS: '1',
      TOXSCOPE_LOG_LEVEL: 'silent',
      ...env,
    },
    cwd: tmpdir(),
  });
}

interface Shared {
  sae: TopKSae;
  tokenizer: Tokenizer;
  cacheDir: string;
  headJson: unknown;
  /** attributes.json of the tiny bundle: identity_attack and insult heads on the toxicity head's transform */
  attributesJson: unknown;
}
let shared: Promise<Shared> | undefined;

/** Labeled posts: `perClass` toxic and non-toxic from each source file. */
type Sample = { text: string; label: number; lang: string; source?: string; meta?: Record<string, unknown> };
function labeledSample(perClass: number): Sample[] {
  const dir = join(goldensDir, '..', 'data', 'train');
  const out: Sample[] = [];
  for (const file of ['davidson_en.jsonl', 'paradetox_en.jsonl', 'germeval2018_de_train.jsonl']) {
    const rows = readFileSync(join(dir, file), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Sample);
    for (const label of [0, 1]) out.push(...rows.filter((r) => r.label === label).slice(0, perClass));
  }
  return out;
}

async function openEngine(cacheDir: string, sae: TopKSae): Promise<ForwardEngine> {
  return ForwardEngine.open({ modelDir: goldenCheckpointDir, layer: TINY_LAYER, sae, cacheDir, threads: 1 });
}

/** SAE, tokenizer, language identifier, and a head trained on the tiny engine's features (once per test file). */
function sharedParts(): Promise<Shared> {
  shared ??= (async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'toxscope-http-cache-'));
    const sae = loadSae(TINY_SAE_DIR);
    const tokenizer = await loadTokenizer();
    const engine = await openEngine(cacheDir, sae);
    const data = labeledSample(60);
    const features: TextFeatures[] = [];
    for (let i = 0; i < data.length; i += 16) {
      const chunk = data.slice(i, i + 16).map((d) => tokenizer.encode(d.text).slice(0, 64));
      const codes = await engine.runTopK(chunk, 'right'); // [16, T, k]
      for (let b = 0; b < chunk.length; b++) features.push(new FeatureAccumulator().addRow(codes, b).result());
    }
    await engine.close();
    const { head } = trainHead(
      { features, labels: data.map((d) => d.label), langs: data.map((d) => d.lang), dSae: sae.dSae },
      { seed: 1, groups: { minSamples: 20, minPerClass: 5 }, meta: { purpose: 'http tests' } },
    );
    // attributes from the sources' original labels (Davidson hate speech, GermEval ABUSE / INSULT), one pass over the same features
    const attributeHeads: Record<string, Head> = {};
    for (const name of ['identity_attack', 'insult']) {
      const idx = data.flatMap((d, i) => (fixtureAttributes(d)[name] === undefined || fixtureAttributes(d)[name] === null ? [] : [i]));
      attributeHeads[name] = trainHead(
        { features: idx.map((i) => features[i]), labels: idx.map((i) => fixtureAttributes(data[i])[name] as number), langs: idx.map((i) => data[i].lang), dSae: sae.dSae },
        { seed: 1, groups: { minSamples: 20, minPerClass: 5 }, fittedTransform: head.transform, meta: { attribute: name } },
      ).head;
    }
    return { sae, tokenizer, cacheDir, headJson: head.toJSON(), attributesJson: attributesToJSON(attributeHeads) };
  })();
  return shared;
}

/** A tiny bundle directory: head.json (+ attributes.json) plus bundle.json naming its version. */
export function writeTinyBundle(dir: string, version: string, headJson: unknown, attributesJson?: unknown): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'head.json'), JSON.stringify(headJson));
  if (attributesJson !== undefined) writeFileSync(join(dir, ATTRIBUTES_FILE), JSON.stringify(attributesJson));
  writeFileSync(join(dir, 'bundle.json'), JSON.stringify({ version }));
  return dir;
}

/** What a test adds to the engine of the bundles it loads. */
export interface TinyEngineOptions {
  /** texts that crashed the engine (src/service/text-quarantine.ts) */
  quarantine?: EngineQuarantine;
  /** the engine's worker thread dies whenever a batch holds this text (test/helpers/crashing-engine.ts) */
  crashOn?: { text: string; tally: PoisonTally };
}

/** Load a tiny bundle directory: validates head.json (Head.fromJSON), opens a fresh engine, warms up. */
export async function loadTinyBundle(dir: string, config: Config, metrics?: Metrics, engineOptions: TinyEngineOptions = {}): Promise<LoadedBundle> {
  const s = await sharedParts();
  let version: string;
  let head: Head;
  let attributes: Record<string, Head>;
  try {
    version = String((JSON.parse(readFileSync(join(dir, 'bundle.json'), 'utf8')) as { version: unknown }).version);
    head = Head.fromJSON(JSON.parse(readFileSync(join(dir, 'head.json'), 'utf8')), join(dir, 'head.json'));
    const attributesPath = join(dir, ATTRIBUTES_FILE);
    attributes = existsSync(attributesPath) ? attributesFromJSON(JSON.parse(readFileSync(attributesPath, 'utf8')), attributesPath) : {};
  } catch (e) {
    if (e instanceof Error && 'kind' in e) throw e;
    throw formatError(`${dir}: not a readable bundle (${(e as Error).message})`);
  }
  // the production path: the engine on a worker thread
  // (and the texts on a tokenizer worker, with the packaged Qwen3 tokenizer, as the shared parts use)
  const [engine, text] = await Promise.all([
    WorkerEngine.open({ modelDir: goldenCheckpointDir, layer: TINY_LAYER, sae: s.sae, cacheDir: s.cacheDir, threads: 1 }),
    TextWorker.open(),
  ]);
  const { quarantine, crashOn } = engineOptions;
  const runner = crashOn ? await crashingOn(engine, text, crashOn.text, crashOn.tally) : engine;
  const classifier = new Classifier({ engine: runner, text, head, attributes, version }, { limits: config.limits, batching: config.batching, metrics, quarantine });
  await classifier.warmUp();
  return {
    classifier,
    source: dir,
    info: {
      name: 'tiny-test-bundle',
      version,
      syntheticBackbone: true,
      notice: 'golden tiny checkpoint with random weights: scores measure the pipeline only',
      model: { path: goldenCheckpointDir, family: engine.info.family, numLayers: 4, hiddenSize: 64 },
      sae: { path: TINY_SAE_DIR, format: s.sae.format, dSae: s.sae.dSae, k: s.sae.k },
      layer: TINY_LAYER,
      head: { path: join(dir, 'head.json') },
      executionProvider: engine.info.provider,
    },
  };
}

export interface TestApp {
  app: ReturnType<typeof createApp>;
  deps: ServiceDeps;
  host: ClassifierHost;
  metrics: Metrics;
  config: Config;
  /** a directory for extra bundles (reload tests) */
  dir: string;
  headJson: unknown;
  close(): Promise<void>;
}

export interface TestAppOptions {
  env?: Record<string, string>;
  deps?: Partial<Omit<ServiceDeps, 'config' | 'metrics' | 'host'>>;
  /** leave the host in 'starting' (readiness tests) */
  notReady?: boolean;
  /** restart a dead engine in-process (default reload: the dead bundle's directory, as loadTinyBundle) */
  restart?: Partial<EngineRestartOptions> & Pick<EngineRestartOptions, 'attempts' | 'backoffMs'>;
  /** given to every bundle loaded (the first, reloads and restarts) */
  engine?: TinyEngineOptions;
}

export async function buildTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const config = testConfig(options.env);
  const metrics = createMetrics({ processDefaults: false });
  const host = new ClassifierHost(options.restart && { reload: (dead) => loadTinyBundle(dead.source!, config, metrics, options.engine), ...options.restart });
  const s = await sharedParts();
  const dir = mkdtempSync(join(tmpdir(), 'toxscope-http-bundles-'));
  const first = writeTinyBundle(join(dir, 'v1'), 'tiny-v1', s.headJson, s.attributesJson);
  if (!options.notReady) host.ready(await loadTinyBundle(first, config, metrics, options.engine));
  const deps: ServiceDeps = {
    config,
    metrics,
    host,
    loadBundle: (path) => loadTinyBundle(path ?? first, config, metrics, options.engine),
    ...options.deps,
  };
  return {
    app: createApp(deps),
    deps,
    host,
    metrics,
    config,
    dir,
    headJson: s.headJson,
    async close() {
      await host.drain();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A Response whose JSON body tests read without casts. */
export type JsonResponse = Omit<Response, 'json'> & { json(): Promise<any> };

/** A request through app.request (no port). */
export function request(app: TestApp['app'], path: string, init?: RequestInit): Promise<JsonResponse> {
  return Promise.resolve(app.request(path, init)) as Promise<JsonResponse>;
}

/** JSON POST through app.request; a string body is sent as is. */
export function post(app: TestApp['app'], path: string, body: unknown, headers: Record<string, string> = {}): Promise<JsonResponse> {
  return request(app, path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
}
