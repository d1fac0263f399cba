/**
 * The classification use case, for every entry point (HTTP routes, a queue consumer): take the serving
 * classifier once, score, record the predictions, and say which bundle answered.
 */
import type { ClassifyInput, ClassifyOutput } from '../engine/classifier.js';
import type { BundleInfo, ServiceDeps } from './deps.js';
import { recordPredictions } from './predictions.js';

export interface ClassifyCall extends ClassifyInput {
  /** the caller's request id, stored with each prediction */
  requestId: string;
  /** false: nothing is stored (Perspective's doNotStore); ids are still given */
  store?: boolean;
  /** how many leading texts are predictions to record (default: all); the rest are only scored (e.g. spans) */
  recorded?: number;
  /** prediction ids to use, one per recorded text (a queue message derives them, so a redelivery stores nothing twice) */
  predictionIds?: readonly string[];
  /** fail when the rows cannot be queued durably, instead of answering anyway (a queue consumer must not acknowledge then) */
  requireStored?: boolean;
}

export interface Classified {
  out: ClassifyOutput;
  /** one prediction id per recorded text */
  ids: string[];
  info: BundleInfo;
}

/** 'overloaded' when the queue is full, 'unavailable' when not ready: before a body is read or parsed. */
export function admitClassification(deps: ServiceDeps): void {
  deps.host.current().classifier.assertRoom(1);
}

export async function classifyTexts(deps: ServiceDeps, call: ClassifyCall): Promise<Classified> {
  const { requestId, store = true, recorded, predictionIds, requireStored, ...request } = call;
  const { classifier, info } = deps.host.current();
  const out = await classifier.classify(request);
  const n = recorded ?? request.texts.length;
  const ids = recordPredictions(deps, requestId, request.texts.slice(0, n), n === out.results.length ? out : { ...out, results: out.results.slice(0, n) }, {
    store,
    ids: predictionIds,
    required: requireStored,
  });
  return { out, ids, info };
}
