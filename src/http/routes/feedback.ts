/** POST /v1/feedback: moderators' labels for earlier predictions, through the write queue (src/db). */
import { Hono } from 'hono';
import { ToxScopeError } from '../../errors.js';
import type { ServiceDeps } from '../../service/deps.js';
import { routeLabel } from '../middleware.js';
import { FeedbackRequest, MAX_FEEDBACK_ITEMS } from '../schemas.js';
import { readJson } from '../validate.js';

const NOTES = {
  stored: undefined,
  updated: 'replaced an earlier label for this prediction: the latest wins',
  unknown_id: 'no prediction with this id',
} as const;

export function feedbackRoutes(deps: ServiceDeps): Hono {
  const app = new Hono();
  app.post('/feedback', routeLabel('/v1/feedback'), async (c) => {
    const body = await readJson(c, FeedbackRequest);
    if (body.items.length > MAX_FEEDBACK_ITEMS)
      throw new ToxScopeError('payload_too_large', `${body.items.length} feedback items in one request, more than the limit of ${MAX_FEEDBACK_ITEMS}`);
    if (!deps.predictions) throw new ToxScopeError('unavailable', 'feedback needs the database, and none is configured for this instance');
    const source = body.source ?? 'api';
    const results = await deps.predictions.recordFeedback(body.items.map((i) => ({ predictionId: i.id, label: i.label === 1, source })));
    const items = results.map((r) => {
      const note = r.superseded ? 'a later label for this prediction was already stored and was kept' : NOTES[r.status];
      return { id: r.predictionId, status: r.status, ...(note && { note }) };
    });
    return c.json({ items }, 202);
  });
  return app;
}
