/**
 * The one error type of ToxScope. Kinds say what went wrong, never how to answer it:
 * the HTTP edge (src/http/errors.ts) maps kinds to status codes, the CLI maps them to exit codes.
 */
export type ErrorKind =
  | 'validation' //      the caller sent something malformed or out of range
  | 'payload_too_large' // the caller sent more than the configured limits
  | 'quarantined' //     the caller sent a text that crashed the engine repeatedly: never run again
  | 'not_found' //       a named thing (prediction id, file, tensor) does not exist
  | 'unauthorized' //    missing or wrong credentials
  | 'forbidden' //       the operation is disabled by configuration
  | 'conflict' //        the request contradicts current state
  | 'overloaded' //      queue full: retry later
  | 'timeout' //         the request took longer than its deadline
  | 'unavailable' //     not ready yet, draining, or a dependency is down
  | 'aborted' //         the caller went away (closed the connection) before its answer
  | 'format' //          an artifact on disk (checkpoint, SAE, bundle) is malformed or mismatched
  | 'internal'; //       a bug

export class ToxScopeError extends Error {
  readonly kind: ErrorKind;
  readonly details?: Record<string, unknown>;

  constructor(kind: ErrorKind, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ToxScopeError';
    this.kind = kind;
    this.details = details;
  }
}

export const formatError = (message: string, details?: Record<string, unknown>) =>
  new ToxScopeError('format', message, details);
export const validationError = (message: string, details?: Record<string, unknown>) =>
  new ToxScopeError('validation', message, details);

export function isToxScopeError(e: unknown): e is ToxScopeError {
  return e instanceof ToxScopeError;
}
