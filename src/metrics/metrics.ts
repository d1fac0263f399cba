/**
 * Prometheus metrics: one Registry per service instance (no module-level singleton), one prefix
 * (`toxscope_`), durations as histograms in seconds. The HTTP middleware, the batcher, the classifier
 * and the drift monitor each receive this object and record into it.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export const METRIC_PREFIX = 'toxscope_';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];
const TOKEN_BUCKETS = [16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536];
const SCORE_BUCKETS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];

/** What the write queue (src/db/write-queue.ts) and the database connection report, read at each scrape. */
export interface WritesSnapshot {
  /** entries held in memory */
  queued: number;
  /** entries held only in the journal, not yet written */
  spilled: number;
  spilledTotal: number;
  replayed: number;
  written: number;
  dropped: number;
  refused: number;
  journalBytes: number;
  /** the database is open, migrated, and the last write succeeded */
  databaseUp: boolean;
}

export interface Metrics {
  registry: Registry;
  /** requests by route (the matched pattern, not the raw path) and status code */
  requests: Counter<'route' | 'method' | 'status'>;
  requestDuration: Histogram<'route' | 'method'>;
  /** time a window waited in the batcher queue */
  queueDuration: Histogram;
  /** time of one forward pass (one batch) */
  inferenceDuration: Histogram;
  tokenizeDuration: Histogram;
  batchSize: Histogram;
  batchTokens: Histogram;
  queueDepth: Gauge;
  tokens: Counter;
  rejected: Counter<'reason'>;
  predictions: Counter<'language' | 'label'>;
  /** the NATS JetStream consumer (`toxscope consume`): messages by outcome (ok, retry, dead_letter) */
  natsMessages: Counter<'outcome'>;
  natsRedeliveries: Counter;
  natsDeadLetters: Counter;
  /** messages of the stream not yet delivered to the durable consumer (what an autoscaler scales on) */
  natsConsumerLag: Gauge;
  natsConsumerAckPending: Gauge;
  /** messages this replica holds (fetched, not yet acknowledged or dead-lettered) */
  natsInflight: Gauge;
  /** 1 while the consumer's NATS connection is up (toxscope consume), else 0 */
  natsConnected: Gauge;
  /** 1 while the durable consumer exists on the server (toxscope consume), else 0 */
  natsConsumerExists: Gauge;
  scores: Histogram<'language'>;
  /** every scored attribute (toxicity included): decisions and scores by attribute and language */
  attributePredictions: Counter<'attribute' | 'language' | 'label'>;
  attributeScores: Histogram<'attribute' | 'language'>;
  f1: Gauge<'attribute' | 'language'>;
  f1Drift: Gauge<'attribute' | 'language'>;
  labeledInWindow: Gauge<'attribute' | 'language'>;
  driftAlarm: Gauge<'attribute' | 'language'>;
  ready: Gauge;
  /** in-process restarts of a dead engine worker: restarted, failed (an attempt), gave_up (liveness then fails) */
  engineRestarts: Counter<'outcome'>;
  /** texts known to the engine quarantine: quarantined (refused) or suspect (present at fewer deaths) */
  engineQuarantineTexts: Gauge<'state'>;
  /** requests refused because a text in them is quarantined */
  engineQuarantineRefusals: Counter;
  feedback: Gauge<'attribute' | 'language'>;
  /** read the write queue's numbers at every scrape (toxscope_write_queue_*, toxscope_write_journal_bytes, toxscope_database_up) */
  observeWrites(source: () => WritesSnapshot): void;
  /** text form for GET /metrics */
  render(): Promise<string>;
  contentType: string;
}

export interface MetricsOptions {
  /** process defaults (cpu, memory, event loop lag, gc); off in tests that build many registries */
  processDefaults?: boolean;
}

export function createMetrics({ processDefaults = true }: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const p = METRIC_PREFIX;
  const registers = [registry];
  if (processDefaults) collectDefaultMetrics({ register: registry, prefix: p });

  // The write queue keeps its own counts; these read them at scrape time (zero until a queue is observed).
  let writes: (() => WritesSnapshot) | undefined;
  const writeCounter = (name: string, help: string, pick: (s: WritesSnapshot) => number) => {
    let reported = 0;
    return new Counter({
      name: `${p}${name}`,
      help,
      registers,
      collect() {
        const now = writes ? pick(writes()) : 0;
        if (now > reported) this.inc(now - reported);
        reported = Math.max(reported, now);
      },
    });
  };
  new Gauge({
    name: `${p}write_queue_entries`,
    help: 'accepted predictions and feedback not yet in the database, by where they wait: memory (also in the journal) or journal (only there, read back in order)',
    labelNames: ['where'],
    registers,
    collect() {
      const s = writes?.();
      this.set({ where: 'memory' }, s?.queued ?? 0);
      this.set({ where: 'journal' }, s?.spilled ?? 0);
    },
  });
  writeCounter('write_queue_spilled_total', 'entries kept only in the journal because the memory bound was reached (a slow or absent database)', (s) => s.spilledTotal);
  writeCounter('write_queue_replayed_total', 'entries written to the database from the journal (spilled, or left by an earlier run)', (s) => s.replayed);
  writeCounter('write_queue_written_total', 'entries written to the database', (s) => s.written);
  writeCounter('write_queue_dropped_total', 'entries the database rejected as invalid, or unreadable journal lines (each logged)', (s) => s.dropped);
  writeCounter('write_queue_refused_total', 'entries refused at enqueue because the journal was full or not writable (the caller got an error)', (s) => s.refused);
  new Gauge({ name: `${p}write_journal_bytes`, help: 'bytes in the write journal (every accepted entry until the database committed it)', registers, collect() { this.set(writes?.().journalBytes ?? 0); } });
  new Gauge({ name: `${p}database_up`, help: '1 when the database is open and migrated, answered its last ping (TOXSCOPE_DB_PING_MS) and took the last write, else 0 (writes wait in the journal)', registers, collect() { this.set(writes?.().databaseUp ? 1 : 0); } });

  return {
    registry,
    observeWrites: (source) => {
      writes = source;
    },
    requests: new Counter({ name: `${p}http_requests_total`, help: 'HTTP requests by route, method and status', labelNames: ['route', 'method', 'status'], registers }),
    requestDuration: new Histogram({ name: `${p}http_request_duration_seconds`, help: 'HTTP request duration', labelNames: ['route', 'method'], buckets: LATENCY_BUCKETS, registers }),
    queueDuration: new Histogram({ name: `${p}queue_duration_seconds`, help: 'time a window waited in the batch queue', buckets: LATENCY_BUCKETS, registers }),
    inferenceDuration: new Histogram({ name: `${p}inference_duration_seconds`, help: 'duration of one batched forward pass', buckets: LATENCY_BUCKETS, registers }),
    tokenizeDuration: new Histogram({ name: `${p}tokenize_duration_seconds`, help: 'tokenization time per request', buckets: LATENCY_BUCKETS, registers }),
    batchSize: new Histogram({ name: `${p}batch_size`, help: 'windows per forward pass', buckets: SIZE_BUCKETS, registers }),
    batchTokens: new Histogram({ name: `${p}batch_tokens`, help: 'real tokens per forward pass', buckets: TOKEN_BUCKETS, registers }),
    queueDepth: new Gauge({ name: `${p}queue_depth`, help: 'windows waiting in the batch queue', registers }),
    tokens: new Counter({ name: `${p}tokens_processed_total`, help: 'real tokens run through the model', registers }),
    rejected: new Counter({ name: `${p}rejected_total`, help: 'work refused or dropped by the batcher', labelNames: ['reason'], registers }),
    predictions: new Counter({ name: `${p}predictions_total`, help: 'classified texts by language and label', labelNames: ['language', 'label'], registers }),
    natsMessages: new Counter({ name: `${p}nats_messages_total`, help: 'queue messages handled by this replica, by outcome (ok, retry, dead_letter)', labelNames: ['outcome'], registers }),
    natsRedeliveries: new Counter({ name: `${p}nats_redeliveries_total`, help: 'queue messages this replica received again (a replica died or a delivery failed before its ack)', registers }),
    natsDeadLetters: new Counter({ name: `${p}nats_dead_letters_total`, help: 'queue messages published to the dead-letter subject by this replica', registers }),
    natsConsumerLag: new Gauge({ name: `${p}nats_consumer_lag`, help: 'messages of the stream not yet delivered to the durable consumer (shared by all replicas)', registers }),
    natsInflight: new Gauge({ name: `${p}nats_inflight`, help: 'queue messages this replica holds: fetched, not yet acknowledged or dead-lettered', registers }),
    natsConnected: new Gauge({ name: `${p}nats_connected`, help: '1 while the NATS connection of `toxscope consume` is up, 0 while it is lost (reconnecting) or closed', registers }),
    natsConsumerExists: new Gauge({ name: `${p}nats_consumer_exists`, help: '1 while the durable consumer of `toxscope consume` exists on the server, 0 when it was found missing (it is created again)', registers }),
    natsConsumerAckPending: new Gauge({ name: `${p}nats_consumer_ack_pending`, help: 'messages delivered to the durable consumer and not yet acknowledged (all replicas)', registers }),
    scores: new Histogram({ name: `${p}score`, help: 'calibrated toxicity probability by language', labelNames: ['language'], buckets: SCORE_BUCKETS, registers }),
    attributePredictions: new Counter({ name: `${p}attribute_predictions_total`, help: 'scored texts by attribute, language and decision', labelNames: ['attribute', 'language', 'label'], registers }),
    attributeScores: new Histogram({ name: `${p}attribute_score`, help: 'calibrated probability by attribute and language', labelNames: ['attribute', 'language'], buckets: SCORE_BUCKETS, registers }),
    f1: new Gauge({ name: `${p}f1`, help: 'F1 of the current drift window by attribute (the bundle\'s: toxicity, insult, ...) and language', labelNames: ['attribute', 'language'], registers }),
    f1Drift: new Gauge({ name: `${p}f1_drift`, help: 'F1 minus the calibration-time baseline by attribute and language', labelNames: ['attribute', 'language'], registers }),
    feedback: new Gauge({ name: `${p}feedback_total`, help: 'labeled predictions (moderator feedback received), all time, by attribute and language', labelNames: ['attribute', 'language'], registers }),
    labeledInWindow: new Gauge({ name: `${p}labeled_in_window`, help: 'labeled predictions in the current drift window by attribute and language (the drift alarm needs at least the configured minimum)', labelNames: ['attribute', 'language'], registers }),
    driftAlarm: new Gauge({ name: `${p}drift_alarm`, help: '1 when |F1 - baseline| exceeds the tolerance with enough labeled predictions in the window, else 0; by attribute and language', labelNames: ['attribute', 'language'], registers }),
    ready: new Gauge({ name: `${p}ready`, help: '1 when a bundle is loaded and warm and the service is not draining (what /readyz answers; for `toxscope consume` also: NATS connected and the durable consumer exists), else 0', registers }),
    engineRestarts: new Counter({ name: `${p}engine_restarts_total`, help: 'in-process restarts of a dead engine worker thread by outcome: restarted, failed (one attempt), gave_up (attempts exhausted: liveness fails)', labelNames: ['outcome'], registers }),
    engineQuarantineTexts: new Gauge({ name: `${p}engine_quarantine_texts`, help: 'texts in flight at engine worker deaths, by state: quarantined (at TOXSCOPE_QUARANTINE_DEATHS deaths: refused without running the engine) or suspect (fewer: retried, alone in its batches)', labelNames: ['state'], registers }),
    engineQuarantineRefusals: new Counter({ name: `${p}engine_quarantine_refusals_total`, help: 'requests (and queue messages) refused because a text in them is quarantined for crashing the engine', registers }),
    render: () => registry.metrics(),
    contentType: registry.contentType,
  };
}
