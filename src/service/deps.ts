/**
 * What the service core is built from, whatever the entry point (the HTTP app, a queue consumer): everything
 * is injected by the composition root (src/main.ts) or by tests (test/helpers/app.ts); nothing here opens
 * files, databases or models itself.
 */
import type { Config } from '../config.js';
import type { Repository, FeedbackItem, FeedbackResult } from '../db/repository.js';
import type { NewPrediction } from '../db/schema.js';
import type { DriftReport, DriftQuery } from '../drift/monitor.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Logger } from '../util/logger.js';
import type { ClassifierHost, LoadedBundle } from './classifier-host.js';
import type { TextQuarantine } from './text-quarantine.js';

/** Where predictions and feedback go: the write queue (src/db/write-queue.ts) in production. */
export interface PredictionSink {
  enqueuePredictions(rows: readonly NewPrediction[]): void;
  recordFeedback(items: readonly FeedbackItem[]): Promise<FeedbackResult[]>;
  /** true while an accepted prediction is not yet written to the database */
  isPending?(predictionId: string): boolean;
  /** write what is queued now (so a lookup by text sees a prediction made a moment ago) */
  flush?(): Promise<void>;
}

/** Where accepted rows stand (the write queue and the database connection), for readiness. */
export interface WritesStatus {
  /** up: open, migrated and the last write succeeded; connecting: not yet opened and migrated; unreachable: writes fail */
  database: 'up' | 'connecting' | 'unreachable';
  /** rows held in memory (and in the journal) */
  queued: number;
  /** rows held only in the journal */
  spilled: number;
  journalBytes: number;
  /** new rows are refused: the journal is full */
  refusing: boolean;
}

/** Whether a queue consumer (`toxscope consume`) can consume, for readiness. */
export interface QueueStatus {
  /** connected and the durable consumer exists (and not stopping) */
  ok: boolean;
  connection: 'connecting' | 'connected' | 'reconnecting' | 'closed';
  /** present: the durable consumer exists on the server; missing: found deleted (being created again) */
  consumer: 'unknown' | 'present' | 'missing';
  /** when connection or consumer last changed (ISO 8601) */
  since: string;
  stream: string;
  durable: string;
  /** the last problem, while not ok */
  error?: string;
}

/** The audit log of threshold changes (src/db/repository.ts). */
export type AuditLog = Pick<Repository, 'recordThresholdChange' | 'recordThresholdChanges' | 'listThresholdChanges'> &
  Partial<Pick<Repository, 'recordAdminEvent' | 'listAdminEvents'>>;

/** Facts about the loaded bundle, for GET /info. */
export interface BundleInfo {
  name: string;
  version: string;
  syntheticBackbone: boolean;
  notice?: string;
  /** path: where it was read (shown to admins only); sha256: the content digest the bundle's manifest records */
  model: { path: string; sha256?: string; family: string; numLayers: number; hiddenSize: number };
  sae: { path: string; sha256?: string; format: string; dSae: number; k: number };
  layer: number;
  head: { path?: string; sha256?: string; version?: string | number };
  executionProvider: string;
  /** the serving precision (src/engine/precision.ts): f16 on CUDA, f32 on CPU by default, int8 when asked */
  weightDtype?: string;
  /** int8 only: 's8', or 'u8' where this CPU's u8 x s8 kernel saturates (src/engine/int8-weight-form.ts) */
  int8Weights?: string;
  /** the precision the head's training features were computed at (the bundle manifest; f32 when unrecorded) */
  bundlePrecision?: string;
  executionProviderFallback?: string;
}

export interface ServiceDeps {
  config: Config;
  metrics: Metrics;
  /** the live classifier, readiness and bundle swaps */
  host: ClassifierHost;
  /** absent: predictions are not stored and /v1/feedback answers 503 */
  predictions?: PredictionSink;
  /** the write queue's state for /readyz; absent: no database is configured */
  writes?: () => WritesStatus;
  /** the queue consumer's state for /readyz and /healthz; absent: no queue consumer (`toxscope serve`) */
  queue?: () => QueueStatus;
  /** texts that crashed the engine (src/service/text-quarantine.ts): /readyz reports the counts; absent: none kept */
  quarantine?: Pick<TextQuarantine, 'counts'>;
  /** absent: threshold changes are refused (every change must be recorded) and /admin/audit answers 503 */
  audit?: AuditLog;
  /** read-only queries of the admin page /admin/ui (src/db/repository.ts); absent: it shows no statistics */
  review?: Pick<Repository, 'labeledScores' | 'scoreBins' | 'f1WindowHistory'>;
  /** finds the prediction a label for a text belongs to (Perspective's suggestscore); absent: suggestscore answers 503 */
  matchText?: Pick<Repository, 'predictionForText'>;
  /** absent: /admin/drift answers 503 */
  drift?: (query: DriftQuery) => Promise<DriftReport>;
  /** loads, validates and warms a bundle from disk (the configured one when path is absent) */
  loadBundle?: (path: string | undefined) => Promise<LoadedBundle>;
  log?: Logger;
}
