/**
 * The service core as the queue consumer sees it: classify with derived ids and the rows queued durably (the
 * write queue appends them to its journal before it returns, so a kill -9 after the ack loses nothing), and the
 * batcher's room.
 */
import { classifyTexts } from '../service/classify.js';
import type { ServiceDeps } from '../service/deps.js';
import type { QueueCore } from './consumer.js';

export function queueCore(deps: ServiceDeps): QueueCore {
  return {
    async classify({ texts, language, requestId, predictionIds }) {
      const { out, ids, info } = await classifyTexts(deps, { texts, language, requestId, predictionIds, requireStored: true });
      return {
        version: out.version,
        syntheticBackbone: info.syntheticBackbone,
        results: out.results.map((r, i) => ({
          id: ids[i],
          score: r.score,
          toxic: r.toxic,
          threshold: r.threshold,
          language: { code: r.language.code, source: r.language.source, thresholds: r.language.thresholds },
        })),
      };
    },
    room() {
      const current = deps.host.peek();
      if (deps.host.readiness !== 'ready' || !current) return 0;
      return Math.max(0, deps.config.batching.queueCapacity - current.classifier.queueDepth);
    },
  };
}

