/** POST /v1/feedback: moderators' labels for earlier predictions (src/service/feedback.ts). */
import { Hono } from 'hono';
import type { ServiceDeps } from '../../service/deps.js';
import { recordFeedback } from '../../service/feedback.js';
import { FeedbackRequest } from '../schemas.js';
import { jsonBody, valid } from '../validate.js';

export function feedbackRoutes(deps: ServiceDeps): Hono {
  const app = new Hono();
  app.post('/feedback', jsonBody(), valid(FeedbackRequest), async (c) => {
    const body = c.req.valid('json');
    return c.json({ items: await recordFeedback(deps, body) }, 202);
  });
  return app;
}
