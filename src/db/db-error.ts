/**
 * What may be said about a database failure in logs and error messages: the SQLSTATE (or socket error) code
 * and the driver's message, never the SQL parameters (user texts, ids, labels). drizzle wraps driver errors
 * in a DrizzleQueryError whose message is the whole statement followed by `params: ...`; Postgres data
 * errors (SQLSTATE class 22) quote the offending value in their message.
 */
import { ToxScopeError } from '../errors.js';

export interface DbErrorDescription {
  /** SQLSTATE or a Node socket error code, when there is one. */
  code?: string;
  message: string;
}

const MAX_MESSAGE = 300;

/** A loggable description of a database error: the innermost driver error's code and message, redacted. */
export function describeDbError(error: unknown): DbErrorDescription {
  // the innermost error is the driver's (postgres.js, PGlite, a socket); outer ones are wrappers
  const chain: unknown[] = [];
  for (let e: unknown = error; e && chain.length < 6 && !chain.includes(e); e = (e as { cause?: unknown }).cause) chain.push(e);
  const withCode = chain.find((e) => typeof (e as { code?: unknown }).code === 'string') as { code: string; message?: unknown } | undefined;
  const innermost = chain[chain.length - 1];
  const source = withCode ?? innermost;
  const code = withCode?.code;
  let message = source instanceof Error || typeof (source as { message?: unknown })?.message === 'string' ? String((source as { message: unknown }).message) : String(source);
  if (/^Failed query:/.test(message)) message = 'query failed'; // a drizzle wrapper with no driver cause: its text holds the parameters
  if (code && /^22/.test(code)) message = `data exception (SQLSTATE ${code})`; // "invalid input syntax for type ...: \"<value>\""
  message = message.replace(/\s+/g, ' ').trim();
  if (message.length > MAX_MESSAGE) message = `${message.slice(0, MAX_MESSAGE)}...`;
  return code ? { code, message } : { message };
}

/** Whether an error is worth retrying: anything but a data error (SQLSTATE class 22 or 23) is. */
export function isTransientDbError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^(22|23)[0-9A-Z]{3}$/.test(code)) return false;
  }
  return true;
}

/**
 * The error a repository throws for a failed query: the description above as its message, the SQLSTATE as
 * `code` (what isTransientDbError reads), and no link to the driver error that carries the statement and its
 * parameters. Transient failures are 'unavailable'; a rejected row is 'internal' (a bug on our side).
 */
export class DatabaseError extends ToxScopeError {
  readonly code?: string;

  constructor(error: unknown, transient: boolean) {
    const d = describeDbError(error);
    super(transient ? 'unavailable' : 'internal', `database: ${d.message}${d.code ? ` (${d.code})` : ''}`, d.code ? { code: d.code } : undefined);
    this.name = 'DatabaseError';
    this.code = d.code;
  }
}
