/** Moderators' labels for earlier predictions, for every entry point; they go through the write queue (src/db). */
import { ToxScopeError } from '../errors.js';
import type { FeedbackResult } from '../db/repository.js';
import type { ServiceDeps } from './deps.js';

/** Most items in one feedback call. */
export const MAX_FEEDBACK_ITEMS = 1000;

export interface FeedbackCall {
  items: readonly { id: string; label: 0 | 1 }[];
  /** who labeled (default 'api') */
  source?: string;
}

export interface FeedbackOutcome {
  id: string;
  status: FeedbackResult['status'];
  note?: string;
}

const NOTES = {
  stored: undefined,
  updated: 'replaced an earlier label for this prediction: the latest wins',
  unknown_id: 'no prediction with this id',
} as const;

export async function recordFeedback(deps: ServiceDeps, call: FeedbackCall): Promise<FeedbackOutcome[]> {
  if (call.items.length > MAX_FEEDBACK_ITEMS)
    throw new ToxScopeError('payload_too_large', `${call.items.length} feedback items in one request, more than the limit of ${MAX_FEEDBACK_ITEMS}`);
  if (!deps.predictions) throw new ToxScopeError('unavailable', 'feedback needs the database, and none is configured for this instance');
  const source = call.source ?? 'api';
  const results = await deps.predictions.recordFeedback(call.items.map((i) => ({ predictionId: i.id, label: i.label === 1, source })));
  return results.map((r) => {
    const note = r.superseded ? 'a later label for this prediction was already stored and was kept' : NOTES[r.status];
    return { id: r.predictionId, status: r.status, ...(note && { note }) };
  });
}
