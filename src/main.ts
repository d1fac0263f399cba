/**
 * Composition root: the only place that builds the service from its parts.
 *
 *   config -> logger, metrics -> write journal + queue, database connector (opens and migrates in the
 *          background, retried until it answers: the service starts and classifies without it) -> app -> bind the port
 *          -> bundle (the demo one is built on first use) -> engine -> warm-up -> stored threshold overrides
 *          -> ready -> drift monitor, threshold sync
 *
 * The port is bound before the bundle loads so that /healthz answers and /readyz says 503 while the model
 * loads (the demo bundle takes about a minute to build on first start); no request reaches the model
 * before its warm-up forward pass has succeeded.
 *
 * Shutdown (SIGTERM/SIGINT): readiness goes 503 and new work is refused, the server stops accepting
 * connections, queued requests finish, the write queue flushes (what cannot be written stays in its journal
 * for the next start), the database closes. A crash (kill -9) loses nothing answered either: every accepted
 * row is in the journal before its answer (src/db/journal.ts).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDemoBundle } from './bundle/demo/demo-bundle.js';
import { readBundleOffThread } from './bundle/read-off-thread.js';
import type { Config, LimitsConfig } from './config.js';
import { createDb } from './db/client.js';
import { DatabaseConnector } from './db/connector.js';
import { describeDbError } from './db/db-error.js';
import { Journal } from './db/journal.js';
import { OverridesCache } from './db/overrides-cache.js';
import type { Repository } from './db/repository.js';
import { WriteQueue } from './db/write-queue.js';
import { createDriftMonitor, driftReport, TOXICITY, type DriftMonitor, type DriftSnapshot } from './drift/monitor.js';
import { Classifier } from './engine/classifier.js';
import { WorkerEngine } from './engine/engine-worker.js';
import type { EngineQuarantine } from './engine/quarantine.js';
import { ThresholdSync, type SyncOutcome } from './service/threshold-sync.js';
import { TextWorker } from './engine/text-worker.js';
import { formatError } from './errors.js';
import { createApp } from './http/app.js';
import { listen } from './http/server.js';
import { ClassifierHost, type LoadedBundle } from './service/classifier-host.js';
import { QUARANTINE_FILE, TextQuarantine } from './service/text-quarantine.js';
import type { AuditLog, ServiceDeps, WritesStatus } from './service/deps.js';
import { createLogger, type Logger } from './util/logger.js';
import { createMetrics, type Metrics } from './metrics/metrics.js';
import { QueueConsumer } from './queue/consumer.js';
import { queueCore } from './queue/core.js';

/** How long a bundle load waits for a database still connecting before serving without its threshold overrides. */
const DATABASE_WAIT_AT_LOAD_MS = 5_000;

export interface RunningService {
  url: string;
  host: ClassifierHost;
  /** resolves when the first bundle is warm (rejects when it cannot load) */
  ready: Promise<void>;
  /** re-read the stored threshold overrides now (what the periodic sync does every TOXSCOPE_THRESHOLD_SYNC_MS) */
  syncThresholds(): Promise<SyncOutcome>;
  /** graceful shutdown; idempotent */
  shutdown(reason?: string): Promise<void>;
}

export interface StartOptions {
  /** also consume the NATS JetStream requests of config.queue (`toxscope consume`), once the bundle is ready */
  consume?: boolean;
  /** how often the consumer re-reads its lag from the server besides each fetch (default 5000 ms) */
  lagIntervalMs?: number;
}

export async function startService(config: Config, log: Logger = createLogger(config.logLevel), options: StartOptions = {}): Promise<RunningService> {
  mkdirSync(config.dataDir, { recursive: true });
  const metrics = createMetrics();
  // texts in flight at engine deaths: kept across engine restarts, bundle swaps and process restarts
  const quarantine = new TextQuarantine({ deaths: config.engineRestart.quarantineDeaths, path: join(config.dataDir, QUARANTINE_FILE), metrics, log });
  // a dead engine worker is repaired in-process: the same bundle is loaded again with a fresh engine
  const host = new ClassifierHost({
    attempts: config.engineRestart.attempts,
    backoffMs: config.engineRestart.backoffMs,
    reload: (dead) => deps.loadBundle!(dead.source),
    onEvent: (e) => {
      if (e.type === 'died') log.warn('the engine worker died: restarting it (readiness 503 meanwhile)', { bundle_version: e.version, reason: e.reason, attempt: e.attempt, attempts: e.attempts, in_ms: e.inMs });
      else if (e.type === 'restarted') {
        metrics.engineRestarts.inc({ outcome: 'restarted' });
        log.info('engine restarted: serving again', { bundle_version: e.version, attempt: e.attempt });
      } else if (e.type === 'failed') {
        metrics.engineRestarts.inc({ outcome: 'failed' });
        log.warn('restarting the engine failed', { bundle_version: e.version, attempt: e.attempt, error: (e.error as Error)?.message ?? String(e.error) });
      } else {
        metrics.engineRestarts.inc({ outcome: 'gave_up' });
        log.error('the engine could not be restarted: liveness fails so that the process is restarted', { bundle_version: e.version, reason: e.reason, attempts: e.attempts });
      }
    },
  });

  // The database is opened and migrated in the background: the service starts, classifies and journals its
  // writes while it is away, and replays them when it answers (src/db/connector.ts).
  const journalDir = join(config.dataDir, 'journal');
  Journal.adoptLegacySpill(join(config.dataDir, 'spill', 'writes.jsonl'), journalDir);
  const connector = new DatabaseConnector({
    open: () => createDb(config.databaseUrl ? { url: config.databaseUrl } : { dataDir: config.dataDir }),
    onError: (e, info) =>
      log.warn('database unavailable: classifying without it, writes wait in the journal', { error: e.message, code: e.code, attempt: info.attempt, retry_in_ms: info.retryInMs }),
    onUp: (handle) => {
      log.info('database ready (migrations applied): replaying the journal', { driver: handle.driver, journaled: queue.stats().queued + queue.stats().spilled });
      queue.wake();
      if (host.peek()) void thresholds.sync().then((o) => o.status !== 'unchanged' && o.status !== 'idle' && logThresholdSync(log, o, 'sync'));
    },
    // an idle service notices an outage (readiness, toxscope_database_up) within a ping, not at its next write
    pingMs: config.writes.databasePingMs,
    onReachability: (reachable, e) => {
      if (!reachable) {
        log.warn('database unreachable (ping): classifying without it, writes wait in the journal', { error: e?.message, code: e?.code });
        return;
      }
      log.info('database reachable again (ping): replaying the journal', { journaled: queue.stats().queued + queue.stats().spilled });
      queue.wake();
      if (host.peek()) void thresholds.sync().then((o) => o.status !== 'unchanged' && o.status !== 'idle' && logThresholdSync(log, o, 'sync'));
    },
  });
  const repo = connector.repository;
  const queue = new WriteQueue({
    repo,
    journalDir,
    syncMs: config.writes.journalSyncMs,
    maxJournalBytes: config.writes.maxJournalBytes,
    // the embedded PGlite (one worker thread, one statement at a time): fewer, larger inserts cost it less per row
    flushDelayMs: config.writes.flushDelayMs ?? (config.databaseUrl ? 20 : 250),
    onError: (e, info) => log.warn('database write failed', { ...describeDbError(e), retrying: info.retrying, dropped: info.dropped !== undefined }),
  });
  const writes = (): WritesStatus => {
    const s = queue.stats();
    return {
      database: connector.state !== 'up' ? 'connecting' : s.databaseUp && connector.reachable ? 'up' : 'unreachable',
      queued: s.queued,
      spilled: s.spilled,
      journalBytes: s.journalBytes,
      refusing: s.journalBytes > config.writes.maxJournalBytes,
    };
  };
  metrics.observeWrites(() => {
    const s = queue.stats();
    return { ...s, databaseUp: connector.reachable && s.databaseUp };
  });
  if (queue.stats().recovered > 0) log.info('the write journal holds rows of an earlier run: they are written once the database answers', { rows: queue.stats().recovered });
  let baselines: Record<string, number> = {};
  let attributeBaselines: Record<string, Record<string, number>> = {};
  let monitor: DriftMonitor | undefined;

  // overrides recorded by PUT /admin/thresholds, replayed onto every bundle of their version before it serves;
  // the last ones the database answered are kept in the data directory and served while it is away
  const overrides = new OverridesCache({
    source: repo,
    path: join(config.dataDir, 'threshold-overrides.json'),
    onFallback: ({ version, cachedAt, error }) =>
      log.warn('threshold overrides could not be read: serving the last ones the database answered (cached)', { bundle_version: version, cached_at: cachedAt, ...describeDbError(error) }),
    onWriteError: (e) => log.warn('the threshold override cache could not be written', { error: (e as Error)?.message ?? String(e) }),
  });
  // a recorded change updates the cache at once (the database committed it just now)
  const audit: AuditLog = {
    ...repo,
    recordThresholdChange: async (change) => {
      const row = await repo.recordThresholdChange(change);
      overrides.recorded([change]);
      return row;
    },
    recordThresholdChanges: async (changes) => {
      const rows = await repo.recordThresholdChanges(changes);
      overrides.recorded(changes);
      return rows;
    },
  };
  const thresholds = new ThresholdSync({
    source: overrides,
    current: () => host.peek()?.classifier ?? null,
    intervalMs: config.thresholdSyncMs,
    onOutcome: (o) => logThresholdSync(log, o, 'sync'),
  });
  const loadBundle = async (path: string | undefined) => {
    const loaded = await loadServingBundle(path, config, { metrics, log, quarantine });
    // a first start opens the database while the bundle loads: give it a moment before reading the overrides
    await connector.whenUp(DATABASE_WAIT_AT_LOAD_MS);
    logThresholdSync(log, await thresholds.apply(loaded.classifier), 'load');
    return loaded;
  };
  let consumer: QueueConsumer | undefined;
  const startedAt = new Date().toISOString();
  const deps: ServiceDeps = {
    config,
    metrics,
    host,
    predictions: queue,
    writes,
    quarantine,
    // `toxscope consume`: readiness includes the NATS connection and the durable consumer
    ...(options.consume && {
      queue: () =>
        consumer?.status() ?? { ok: false, connection: 'connecting', consumer: 'unknown', since: startedAt, stream: config.queue.stream, durable: config.queue.durable },
    }),
    audit,
    review: repo,
    matchText: repo,
    drift: (q) => driftReport(repo, q.attribute && q.attribute !== TOXICITY ? (attributeBaselines[q.attribute] ?? {}) : baselines, q),
    loadBundle: async (path) => {
      const loaded = await loadBundle(path);
      baselines = loaded.baselines;
      attributeBaselines = loaded.attributeBaselines;
      monitor = restartMonitor(monitor, repo, baselines, attributeBaselines, config, metrics, log);
      return loaded;
    },
    log,
  };
  // The embedded PGlite is local: its first opening is waited for before serving, so that a ready service takes
  // threshold changes at once (it is created and migrated on its own worker thread, src/db/pglite-worker.ts: the
  // wait holds no event loop; a failure is retried in the background). Postgres is never waited for.
  const firstAttempt = connector.start();
  if (!config.databaseUrl) await firstAttempt;
  const app = createApp(deps);

  const { server, port } = await listen(app, config);
  const url = `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${port}`;
  log.info('listening; loading the bundle', { url });

  let stopping: Promise<void> | undefined;
  const ready = (async () => {
    const loaded = await loadBundle(undefined);
    if (stopping) {
      // shut down while the first bundle was loading (a first start builds the demo bundle): never serve it
      await loaded.classifier.close();
      return;
    }
    baselines = loaded.baselines;
    attributeBaselines = loaded.attributeBaselines;
    host.ready(loaded);
    if (!options.consume) metrics.ready.set(1);
    monitor = restartMonitor(monitor, repo, baselines, attributeBaselines, config, metrics, log);
    thresholds.start();
    if (options.consume) {
      // the same core as HTTP: same bundle, thresholds, write queue, drift and metrics
      consumer = new QueueConsumer(config.queue, queueCore(deps), {
        metrics,
        log,
        lagIntervalMs: options.lagIntervalMs,
        // toxscope_ready says what /readyz says: a replica that lost NATS or its consumer is not ready
        onStatus: (s) => metrics.ready.set(!stopping && host.readiness === 'ready' && s.ok ? 1 : 0),
      });
      await consumer.start();
    }
    log.info('ready', { bundle: loaded.info.name, version: loaded.info.version, provider: loaded.info.executionProvider, synthetic_backbone: loaded.info.syntheticBackbone });
  })();

  const shutdown = (reason = 'shutdown') =>
    (stopping ??= (async () => {
      log.info('shutting down: finishing queued requests', { reason });
      metrics.ready.set(0);
      const closed = new Promise<void>((r) => server.close(() => r()));
      // Before the first bundle is ready nothing has been accepted, so there is nothing to finish: do not wait
      // for the load (a first start builds the demo bundle, about a minute; Kubernetes allows 30 s by default).
      if (host.readiness !== 'starting') await ready.catch(() => undefined);
      // the consumer fetches nothing more, finishes (publishes, acknowledges) what it holds, then closes
      await consumer?.stop();
      await host.drain();
      monitor?.stop();
      thresholds.stop();
      if ('closeIdleConnections' in server) server.closeIdleConnections();
      await closed;
      await queue.close({ timeoutMs: 5000 });
      await connector.close();
      const left = queue.stats();
      log.info('stopped', { journaled: left.queued + left.spilled });
    })());

  return { url, host, ready, shutdown, syncThresholds: () => thresholds.sync() };
}

function logThresholdSync(log: Logger, o: SyncOutcome, when: 'load' | 'sync'): void {
  if (o.status === 'changed') {
    const msg = when === 'load' ? 'stored threshold overrides applied to the loaded bundle' : 'threshold overrides changed in the database: head swapped';
    log.info(msg, { bundle_version: o.version, changed: o.changed, overrides: o.overrides });
  } else if (o.status === 'failed') {
    const msg = when === 'load' ? "threshold overrides could not be read: serving the bundle's thresholds, retrying at the next sync" : 'threshold sync failed: the current thresholds stay';
    log.warn(msg, { bundle_version: o.version, error: (o.error as Error)?.message ?? String(o.error) });
  } else if (o.status === 'raced') log.debug('threshold sync raced a threshold change: the next sync decides', { bundle_version: o.version });
}

export interface ServingBundle extends LoadedBundle {
  /** toxicity's calibration-time F1 per language */
  baselines: Record<string, number>;
  /** the bundle's other attributes -> their calibration-time F1 per language (each attribute has drift windows) */
  attributeBaselines: Record<string, Record<string, number>>;
}

/** Each attribute's calibration-split F1 per language, from the manifest's metrics.attributes (absent: none). */
export function attributeBaselinesOf(metrics: Record<string, unknown>, names: readonly string[]): Record<string, Record<string, number>> {
  const reports = (metrics.attributes ?? {}) as Record<string, { calibration_split?: { languages?: Record<string, { f1?: number | null }> } }>;
  const out: Record<string, Record<string, number>> = {};
  for (const name of names) {
    const languages = reports[name]?.calibration_split?.languages ?? {};
    out[name] = Object.fromEntries(Object.entries(languages).map(([l, m]) => [l, m?.f1 ?? 0]));
  }
  return out;
}

/** Progress of long work as log lines: one per 10%, so a first start shows it is moving. */
function progressLogger(emit: (stage: string, done: number, total: number) => void): (stage: string, done: number, total: number) => void {
  let last = '';
  return (stage, done, total) => {
    const key = `${stage}:${Math.floor((10 * done) / Math.max(total, 1))}`;
    if (key !== last) emit(stage, done, total);
    last = key;
  };
}

/** Read, validate, open and warm one bundle. Any refusal throws before the running bundle is touched. */
export async function loadServingBundle(
  path: string | undefined,
  config: Config,
  { metrics, log, quarantine }: { metrics: Metrics; log: Logger; quarantine?: EngineQuarantine },
): Promise<ServingBundle> {
  const dir =
    path ??
    config.bundle ??
    (await ensureDemoBundle({
      dataDir: config.dataDir, provider: config.executionProvider, threads: config.threads || undefined,
      log: (line) => log.info(line),
      onProgress: progressLogger((stage, done, total) => log.info(`building the demo bundle: ${stage}`, { done, total, percent: Math.floor((100 * done) / total) })),
    }));
  // the model and SAE are found by content hash: the recorded location, the bundle, then TOXSCOPE_MODEL_DIR
  // read, hashed and validated on a worker thread: the event loop keeps serving the old bundle meanwhile
  const bundle = await readBundleOffThread(dir, { modelDirs: config.modelDirs, hashCachePath: join(config.dataDir, 'hash-cache.json') });
  const limits = bundleLimits(config, bundle.manifest.metrics, dir);
  const m = bundle.manifest;
  // The engine runs on a worker thread: onnxruntime's run blocks its thread, and HTTP must not wait on it.
  // So do normalising, language identification and tokenizing (and building the model's tokenizer: an 11 MB
  // tokenizer.json), on a tokenizer worker of this bundle's own.
  const [text, opened] = await Promise.allSettled([
    TextWorker.open({ modelDir: bundle.modelDir }),
    WorkerEngine.open({
      modelDir: bundle.modelDir,
      layer: m.layer,
      sae: bundle.sae,
      transferSae: true, // the main thread never encodes: the worker holds the only copy of the SAE
      cacheDir: join(config.dataDir, 'graph-cache'),
      provider: config.executionProvider,
      precision: config.precision,
      threads: config.threads || undefined,
      warn: (msg) => log.warn(msg),
    }),
  ]);
  if (text.status === 'rejected' || opened.status === 'rejected') {
    if (text.status === 'fulfilled') await text.value.close();
    if (opened.status === 'fulfilled') await opened.value.close();
    throw text.status === 'rejected' ? text.reason : (opened as PromiseRejectedResult).reason;
  }
  const engine = opened.value;
  const classifier = new Classifier(
    { engine, text: text.value, head: bundle.head, attributes: bundle.attributes, featureLabels: bundle.featureLabels, openaiCategories: bundle.openaiCategories, version: m.version },
    { limits, batching: config.batching, metrics, quarantine },
  );
  try {
    await classifier.warmUp();
  } catch (e) {
    await classifier.close().catch(() => undefined);
    throw e;
  }
  const e = engine.info;
  const bundlePrecision = m.precision ?? 'f32';
  if (bundlePrecision !== e.weightDtype)
    log.warn(`the head was trained on ${bundlePrecision} features and is served at ${e.weightDtype}: allowed, but its scores can differ slightly from its training (README "Precision")`, { bundle: m.version });
  return {
    classifier,
    source: dir,
    baselines: m.baseline_f1,
    attributeBaselines: attributeBaselinesOf(m.metrics, Object.keys(bundle.attributes ?? {})),
    info: {
      name: m.name,
      version: m.version,
      syntheticBackbone: m.synthetic_backbone,
      notice: m.notice,
      model: { path: bundle.modelDir, sha256: m.model.sha256, family: e.family, numLayers: m.model.num_layers, hiddenSize: m.model.hidden_size },
      sae: { path: bundle.saePath, sha256: m.sae.sha256, format: m.sae.format, dSae: m.sae.d_sae, k: m.k },
      layer: m.layer,
      head: { path: join(dir, m.head.path), sha256: m.head.sha256, version: m.head.sha256.slice(0, 12) },
      executionProvider: e.provider,
      weightDtype: e.weightDtype,
      int8Weights: e.int8Weights,
      bundlePrecision,
      ...(e.fallbackReason && { executionProviderFallback: e.fallbackReason }),
    },
  };
}

/** A head must see features built as in training: the bundle's window length and overlap win over the defaults. */
function bundleLimits(config: Config, metrics: Record<string, unknown>, dir: string): LimitsConfig {
  const w = metrics.window_tokens;
  const o = metrics.window_overlap;
  const limits = { ...config.limits };
  if (typeof w === 'number' && typeof o === 'number') {
    limits.windowTokens = w;
    limits.windowOverlap = o;
  }
  if (limits.windowTokens > config.batching.maxBatchTokens)
    throw formatError(`${dir}: the bundle's windows of ${limits.windowTokens} tokens do not fit TOXSCOPE_MAX_BATCH_TOKENS ${config.batching.maxBatchTokens}`);
  return limits;
}

/**
 * The drift gauges of one snapshot: series only for the bundle's attributes and each attribute's own languages (those
 * with a baseline F1): stored predictions carry any language code a caller hinted, and each would be a new series
 * (bounded label values).
 */
export function publishDrift(
  metrics: Metrics,
  s: DriftSnapshot,
  baselines: Record<string, number>,
  attributeBaselines: Record<string, Record<string, number>>,
  log?: Logger,
): void {
  for (const [attribute, a] of Object.entries(s.attributes)) {
    const own = attribute === TOXICITY ? baselines : attributeBaselines[attribute];
    if (!own) continue;
    for (const [language, d] of Object.entries(a.languages)) {
      if (!(language in own)) continue;
      const labels = { attribute, language };
      // an undefined F1 (no predicted or true positives in the window) drops the series instead of keeping a stale value
      if (d.f1 !== null) metrics.f1.set(labels, d.f1);
      else metrics.f1.remove(labels);
      if (d.drift !== null) metrics.f1Drift.set(labels, d.drift);
      else metrics.f1Drift.remove(labels);
      metrics.labeledInWindow.set(labels, d.n);
      metrics.driftAlarm.set(labels, d.alarm ? 1 : 0);
    }
    for (const [language, n] of Object.entries(a.feedbackTotals)) if (language in own) metrics.feedback.set({ attribute, language }, n);
    if (a.alarms.length > 0) log?.warn('F1 drift alarm', { attribute, languages: a.alarms });
  }
}

function restartMonitor(
  previous: DriftMonitor | undefined,
  repo: Repository,
  baselines: Record<string, number>,
  attributeBaselines: Record<string, Record<string, number>>,
  config: Config,
  metrics: Metrics,
  log: Logger,
): DriftMonitor {
  previous?.stop();
  // a reload may drop an attribute: its series go with it (label values stay the loaded bundle's attributes)
  for (const g of [metrics.f1, metrics.f1Drift, metrics.labeledInWindow, metrics.driftAlarm, metrics.feedback]) g.reset();
  const monitor = createDriftMonitor({
    repo,
    baselines,
    attributes: attributeBaselines,
    tolerance: config.drift.tolerance,
    minLabeled: config.drift.minLabeled,
    intervalMs: config.drift.intervalMs,
    onUpdate: (s) => publishDrift(metrics, s, baselines, attributeBaselines, log),
    onError: (e) => log.warn('drift computation failed', { error: (e as Error)?.message ?? String(e) }),
  });
  monitor.start();
  return monitor;
}

