/** Middleware factories: each takes its options and returns a named handler. */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Context, MiddlewareHandler, Next } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { matchedRoutes } from 'hono/route';
import { ToxScopeError } from '../errors.js';
import type { ErrorDialect } from './errors.js';
import type { Metrics } from '../metrics/metrics.js';
import { admitClassification } from '../service/classify.js';
import type { ServiceDeps } from '../service/deps.js';
import type { Logger } from '../util/logger.js';
import './context.js';

const SANE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** X-Request-Id: the caller's when sane, else a new UUID; echoed on the response. */
export function requestId(): MiddlewareHandler {
  return async function requestIdMiddleware(c: Context, next: Next) {
    const given = c.req.header('x-request-id');
    const id = given && SANE_ID.test(given) ? given : randomUUID();
    c.set('requestId', id);
    c.header('X-Request-Id', id);
    await next();
  };
}

/**
 * The route pattern a request matched, as registered (hono/route): '/v1/classify', never the raw path, so the
 * metric label set is bounded. Middleware registered with use() is not a route: a request that matched only
 * middleware (no route for its method and path) is 'unmatched'.
 */
export function routeLabelOf(c: Context): string {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) if (routes[i].method !== 'ALL') return routes[i].path;
  return 'unmatched';
}

/** Requests by route pattern (never the raw path: bounded label sets) and status, with durations. */
export function requestMetrics({ metrics, log }: { metrics: Metrics; log?: Logger }): MiddlewareHandler {
  return async function requestMetricsMiddleware(c: Context, next: Next) {
    const start = performance.now();
    await next();
    const route = routeLabelOf(c);
    const seconds = (performance.now() - start) / 1000;
    metrics.requests.inc({ route, method: c.req.method, status: String(c.res.status) });
    metrics.requestDuration.observe({ route, method: c.req.method }, seconds);
    log?.debug('request', { requestId: c.get('requestId'), method: c.req.method, route, status: c.res.status, ms: Math.round(seconds * 1e4) / 10 });
  };
}

/** Classification routes: a full queue answers 429 (not ready: 503) before the body is read. */
export function admitted(deps: ServiceDeps): MiddlewareHandler {
  return async function admittedMiddleware(_c: Context, next: Next) {
    admitClassification(deps);
    await next();
  };
}

/**
 * Errors of these routes in their API's shape and status codes (src/http/errors.ts), with the core's field names
 * rewritten to the caller's by `rename` (e.g. texts[0] -> input[0]).
 */
export function speaks(dialect: ErrorDialect, rename?: (message: string) => string): MiddlewareHandler {
  return async function speaksMiddleware(c: Context, next: Next) {
    c.set('errorDialect', dialect);
    if (rename) c.set('renameFields', rename);
    await next();
  };
}

/** Bodies above maxBytes are refused with 413 before they are read whole. */
export function limitBody(maxBytes: number): MiddlewareHandler {
  return bodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw new ToxScopeError('payload_too_large', `request body is larger than the limit of ${maxBytes} bytes (TOXSCOPE_MAX_BODY_BYTES)`, { limit: maxBytes, body: true });
    },
  });
}

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * Bearer token for /admin, compared in constant time (sha-256 of both sides, so lengths never leak).
 * No token configured: every admin call is 403 and says how to enable it.
 */
export function adminAuth({ token }: { token: string | null }): MiddlewareHandler {
  const expected = token === null ? null : sha256(token);
  return async function adminAuthMiddleware(c: Context, next: Next) {
    if (expected === null)
      throw new ToxScopeError('forbidden', 'admin endpoints are disabled: no admin token is configured (set TOXSCOPE_ADMIN_TOKEN or --admin-token)');
    const header = c.req.header('authorization') ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) throw new ToxScopeError('unauthorized', 'admin endpoints need an Authorization: Bearer <token> header');
    if (!timingSafeEqual(sha256(m[1]), expected)) throw new ToxScopeError('unauthorized', 'the admin token is wrong');
    await next();
  };
}

/** Whether an Authorization header carries the admin token (constant time); for answers that say more to admins. */
export function adminTokenCheck(token: string | null): (authorization: string | undefined) => boolean {
  const expected = token === null ? null : sha256(token);
  return (authorization) => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    return expected !== null && m !== null && timingSafeEqual(sha256(m[1]), expected);
  };
}

/** While draining, ask clients to drop keep-alive connections so none is reused as the listener closes. */
export function closeWhenDraining({ draining }: { draining: () => boolean }): MiddlewareHandler {
  return async function closeWhenDrainingMiddleware(c: Context, next: Next) {
    await next();
    if (draining()) c.header('Connection', 'close');
  };
}
