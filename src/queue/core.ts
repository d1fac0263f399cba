/**
 * The service core as the queue consumer sees it: classify with derived ids, rows stored before the message is
 * acknowledged, and the batcher's room.
 *
 * Stored means written to the shared database, not only journaled: the write queue's journal is on this
 * replica's disk, and a replica that is killed and never comes back (a deleted pod, a lost node) would take
 * journaled rows of acknowledged messages with it. The stream is the durable store every replica shares, so a
 * message stays unacknowledged there until its rows are in the database. Waiting costs each message one flush
 * delay of latency, not throughput (many messages are in flight); while the database is away, messages wait
 * unacknowledged in the stream and are redelivered after TOXSCOPE_NATS_ACK_WAIT_MS (their ids make that harmless).
 */
import { classifyTexts } from '../service/classify.js';
import type { ServiceDeps } from '../service/deps.js';
import type { QueueCore } from './consumer.js';

export function queueCore(deps: ServiceDeps): QueueCore {
  return {
    async classify({ texts, language, attributes, requestId, predictionIds }) {
      const { out, ids, info } = await classifyTexts(deps, { texts, language, attributes, requestId, predictionIds, requireStored: true });
      await written(deps, ids);
      return {
        version: out.version,
        syntheticBackbone: info.syntheticBackbone,
        results: out.results.map((r, i) => ({
          id: ids[i],
          score: r.score,
          toxic: r.toxic,
          threshold: r.threshold,
          language: { code: r.language.code, source: r.language.source, thresholds: r.language.thresholds },
          attributes: Object.fromEntries(
            Object.entries(r.attributes).map(([name, a]) => [name, { score: a.score, toxic: a.toxic, threshold: a.threshold, thresholds: a.thresholds, span: { start: a.span[0], end: a.span[1] } }]),
          ),
        })),
      };
    },
    limits() {
      return { batchTexts: deps.config.batching.maxBatchTexts, deadlineMs: deps.config.batching.requestTimeoutMs };
    },
    room() {
      const current = deps.host.peek();
      // not while the engine restarts either: a message fetched then would fail and spend one of its tries
      if (deps.host.notReadyReason() !== null || !current) return 0;
      return Math.max(0, deps.config.batching.queueCapacity - current.classifier.queueDepth);
    },
  };
}

const STORED_POLL_MS = 10;

/** Resolves once none of `ids` is waiting in the write queue. */
async function written(deps: ServiceDeps, ids: readonly string[]): Promise<void> {
  const sink = deps.predictions;
  if (!sink?.isPending) return;
  while (ids.some((id) => sink.isPending!(id))) await new Promise((r) => setTimeout(r, STORED_POLL_MS));
}
