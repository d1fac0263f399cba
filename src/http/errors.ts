/**
 * The one mapping from ToxScopeError kinds to HTTP answers, used by app.onError, in the error shape of the API
 * a route belongs to (its "dialect", set by the `speaks()` middleware):
 *
 *   native       {"error": {"kind", "message", "code", "status"}}     validation and quarantined 422, malformed body 400
 *   openai       {"error": {"message", "type", "param", "code"}}       validation, quarantined and oversize input 400
 *   perspective  {"error": {"code", "message", "status", "details"}}   Google's shape; validation, quarantined and oversize 400
 *
 * Status codes per API are what its clients expect: OpenAI's SDKs raise BadRequestError on 400 and retry 429 and
 * 5xx; Google's API clients read `status` (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...); ToxScope's own API keeps
 * 422 for a well-formed body that fails validation and 400 for one that cannot be parsed. Messages of the
 * compatible APIs name the caller's fields (`input[0]`, `comment.text`), never ToxScope's internal ones.
 */
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { type ErrorKind, ToxScopeError } from '../errors.js';
import type { Logger } from '../util/logger.js';

export type ErrorDialect = 'native' | 'openai' | 'perspective';

const STATUS: Record<ErrorKind, ContentfulStatusCode> = {
  validation: 422,
  payload_too_large: 413,
  quarantined: 422, // the text crashed the engine repeatedly (src/service/text-quarantine.ts): not retryable
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

/** OpenAI's error `type` and `code` per kind (what its SDKs and dashboards show). */
const OPENAI_TYPE: Record<ErrorKind, { type: string; code: string | null }> = {
  validation: { type: 'invalid_request_error', code: 'invalid_value' },
  payload_too_large: { type: 'invalid_request_error', code: 'input_too_large' },
  quarantined: { type: 'invalid_request_error', code: 'input_quarantined' },
  not_found: { type: 'invalid_request_error', code: 'not_found' },
  unauthorized: { type: 'invalid_request_error', code: 'invalid_api_key' },
  forbidden: { type: 'invalid_request_error', code: 'forbidden' },
  conflict: { type: 'invalid_request_error', code: 'conflict' },
  overloaded: { type: 'requests', code: 'rate_limit_exceeded' },
  timeout: { type: 'server_error', code: 'timeout' },
  unavailable: { type: 'server_error', code: 'service_unavailable' },
  format: { type: 'server_error', code: null },
  internal: { type: 'server_error', code: null },
  aborted: { type: 'server_error', code: 'client_closed_request' },
};

export function statusOf(e: ToxScopeError, dialect: ErrorDialect = 'native'): ContentfulStatusCode {
  if (e.kind === 'validation') return e.details?.malformed || dialect !== 'native' ? 400 : 422;
  if (e.kind === 'quarantined') return dialect === 'native' ? 422 : 400;
  // the compatible APIs answer an oversize input as a bad request; ToxScope's own says 413 (a size limit)
  if (e.kind === 'payload_too_large' && dialect !== 'native' && !e.details?.body) return 400;
  return STATUS[e.kind];
}

/** Names in a message as the caller wrote them: a route's renames, and `body.` dropped from field paths. */
export function callerMessage(message: string, rename?: (text: string) => string): string {
  return (rename ? rename(message) : message).replace(/\bbody\.(?=\w)/g, '');
}

/** The first field a message names (`input[1]`, `comment.text`), for OpenAI's `param`. */
function paramOf(message: string): string | null {
  return /^([A-Za-z_][\w]*(?:\[\d+\]|\.[A-Za-z_]\w*|\.\d+)*)(?=[: ]|$)/.exec(message)?.[1] ?? null;
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
    const dialect = c.get('errorDialect') ?? 'native';
    const status = statusOf(e, dialect);
    if (status === 500) log?.error('request failed', { requestId: c.get('requestId'), kind: e.kind, error: String(err?.stack ?? err) });
    if (e.kind === 'overloaded' || e.kind === 'unavailable') {
      const retry = Number(e.details?.retryAfterSeconds ?? (e.kind === 'overloaded' ? 1 : 5));
      c.header('Retry-After', String(Math.max(1, Math.ceil(retry))));
    }
    if (e.kind === 'unauthorized') c.header('WWW-Authenticate', 'Bearer realm="toxscope-admin"');
    // internal errors say which request failed, not how
    const raw = e.kind === 'internal' ? `internal error (request ${c.get('requestId') ?? 'unknown'})` : e.message;
    if (dialect === 'native') return c.json({ error: { kind: e.kind, message: raw, code: status, status: GOOGLE_STATUS[status] ?? 'UNKNOWN' } }, status);
    const message = callerMessage(raw, c.get('renameFields'));
    if (dialect === 'openai') {
      const t = OPENAI_TYPE[e.kind];
      const code = e.details?.malformed ? 'invalid_json' : t.code;
      return c.json({ error: { message, type: t.type, param: (e.kind === 'validation' || e.kind === 'payload_too_large' || e.kind === 'quarantined') && !e.details?.malformed && !e.details?.body ? paramOf(message) : null, code } }, status);
    }
    const details = e.kind === 'payload_too_large' && !e.details?.body ? [{ '@type': 'type.googleapis.com/google.commentanalyzer.v1alpha1.Error', errorType: 'COMMENT_TOO_LONG' }] : undefined;
    return c.json({ error: { code: status, message, status: GOOGLE_STATUS[status] ?? 'UNKNOWN', ...(details && { details }) } }, status);
  };
}
