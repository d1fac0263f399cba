/**
 * The one mapping from ToxScopeError kinds to HTTP answers, used by app.onError. Bodies are
 * `{"error": {"kind", "message", "code", "status"}}`: `kind` is ours, `code` the HTTP status and `status`
 * Google's canonical name (what Perspective API clients read); `message` is what OpenAI clients read.
 */
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { type ErrorKind, ToxScopeError } from '../errors.js';
import type { Logger } from '../util/logger.js';

const STATUS: Record<ErrorKind, ContentfulStatusCode> = {
  validation: 422,
  payload_too_large: 413,
  not_found: 404,
  unauthorized: 401,
  forbidden: 403,
  conflict: 409,
  overloaded: 429,
  timeout: 504,
  unavailable: 503,
  aborted: 499 as ContentfulStatusCode, // nginx's "client closed request": no one reads it, the metrics do
  format: 500, // an artifact on disk is broken: our fault, not the caller's (reload maps it to 422 itself)
  internal: 500,
};

const GOOGLE_STATUS: Record<number, string> = {
  499: 'CANCELLED',
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  409: 'ABORTED',
  413: 'INVALID_ARGUMENT',
  422: 'INVALID_ARGUMENT',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

export function statusOf(e: ToxScopeError, validationStatus: 400 | 422 = 422): ContentfulStatusCode {
  if (e.kind === 'validation') return e.details?.malformed ? 400 : validationStatus;
  return STATUS[e.kind];
}

export function errorHandler(log?: Logger) {
  return function onError(err: Error, c: Context): Response {
    let e: ToxScopeError;
    // a client that closed its connection (mid-upload, or while its texts were scored) is no server error,
    // whatever broke first when its body stream ended early
    if (c.req.raw.signal?.aborted && !(err instanceof ToxScopeError && err.kind !== 'internal'))
      e = new ToxScopeError('aborted', 'the client closed the connection before the answer', undefined, { cause: err });
    else if (err instanceof ToxScopeError) e = err;
    else if (err instanceof HTTPException) {
      const s = err.status;
      const kind: ErrorKind = s === 413 ? 'payload_too_large' : s === 401 ? 'unauthorized' : s === 404 ? 'not_found' : s < 500 ? 'validation' : 'internal';
      e = new ToxScopeError(kind, err.message || `HTTP ${s}`, s === 400 ? { malformed: true } : undefined);
    } else {
      e = new ToxScopeError('internal', 'internal error', undefined, { cause: err });
    }
    const status = statusOf(e, c.get('validationStatus') ?? 422);
    if (status === 500) log?.error('request failed', { requestId: c.get('requestId'), kind: e.kind, error: String(err?.stack ?? err) });
    if (e.kind === 'overloaded' || e.kind === 'unavailable') {
      const retry = Number(e.details?.retryAfterSeconds ?? (e.kind === 'overloaded' ? 1 : 5));
      c.header('Retry-After', String(Math.max(1, Math.ceil(retry))));
    }
    if (e.kind === 'unauthorized') c.header('WWW-Authenticate', 'Bearer realm="toxscope-admin"');
    // internal errors say which request failed, not how
    const message = e.kind === 'internal' ? `internal error (request ${c.get('requestId') ?? 'unknown'})` : e.message;
    return c.json({ error: { kind: e.kind, message, code: status, status: GOOGLE_STATUS[status] ?? 'UNKNOWN' } }, status);
  };
}
