/**
 * The Hono app factory. Everything arrives through `deps`; the app holds no global state, so tests build
 * as many as they like and call them with app.request().
 */
import { Hono } from 'hono';
import { ToxScopeError } from '../errors.js';
import type { ServiceDeps } from '../service/deps.js';
import { errorHandler } from './errors.js';
import { closeWhenDraining, limitBody, requestId, requestMetrics } from './middleware.js';
import { adminRoutes } from './routes/admin.js';
import { adminUiRoutes } from './routes/admin-ui.js';
import { classifyRoutes } from './routes/classify.js';
import { feedbackRoutes } from './routes/feedback.js';
import { healthRoutes } from './routes/health.js';
import { moderationRoutes } from './routes/moderations.js';
import { perspectiveRoutes } from './routes/perspective.js';

export const SERVICE_VERSION = '0.1.0';

export function createApp(deps: ServiceDeps): Hono {
  const app = new Hono();
  app.use('*', requestId());
  app.use('*', requestMetrics({ metrics: deps.metrics, log: deps.log }));
  app.use('*', closeWhenDraining({ draining: () => deps.host.readiness === 'draining' }));
  app.use('*', limitBody(deps.config.limits.maxBodyBytes));

  app.route('/', healthRoutes(deps, SERVICE_VERSION));
  app.route('/v1', classifyRoutes(deps));
  app.route('/v1', moderationRoutes(deps));
  app.route('/v1', feedbackRoutes(deps));
  app.route('/v1alpha1', perspectiveRoutes(deps));
  app.route('/admin/ui', adminUiRoutes(deps, (request) => app.fetch(request))); // before /admin: its own login
  app.route('/admin', adminRoutes(deps));

  app.notFound((c) => {
    throw new ToxScopeError('not_found', `no route for ${c.req.method} ${new URL(c.req.url).pathname}`);
  });
  app.onError(errorHandler(deps.log));
  return app;
}
