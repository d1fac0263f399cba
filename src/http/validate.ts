/**
 * Request bodies: `jsonBody()` reads the bytes as strict UTF-8 and parses JSON once (malformed bodies are 400,
 * details.malformed; `optional`: an empty body reads as {}); then `valid(schema)`, @hono/zod-validator with a
 * hook that throws the project's error (app.onError maps it), checks the shape and names the field.
 *
 *   app.post('/x', jsonBody(), valid(Schema), (c) => { const body = c.req.valid('json'); ... })
 */
import { zValidator } from '@hono/zod-validator';
import type { Context, MiddlewareHandler, Next } from 'hono';
import type { z } from 'zod';
import { ToxScopeError } from '../errors.js';
import { jsonShapeProblem, type JsonShapeLimits } from '../util/json-shape.js';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * No request of any API nests deeper than a few levels or holds more than a few thousand values (1000 feedback
 * items are about 3000): bodies beyond these are refused before JSON.parse (src/util/json-shape.ts).
 */
export const JSON_LIMITS: JsonShapeLimits = { maxDepth: 32, maxValues: 20_000 };
const JSON_TYPE = /^application\/([\w.+-]+\+)?json\b/i;

export function jsonBody({ optional = false } = {}): MiddlewareHandler {
  return async function jsonBodyMiddleware(c: Context, next: Next) {
    const type = c.req.header('content-type') ?? '';
    if (type !== '' && !JSON_TYPE.test(type))
      throw new ToxScopeError('validation', `request body must be JSON (Content-Type: application/json), got '${type}'`, { malformed: true });
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await c.req.arrayBuffer());
    } catch (e) {
      if (e instanceof ToxScopeError) throw e; // over the body limit
      // the stream ended early: the client closed the connection mid-upload
      throw new ToxScopeError('aborted', 'the request body was not received in full: the client went away', undefined, { cause: e });
    }
    let text: string;
    try {
      text = strictUtf8.decode(bytes);
    } catch {
      throw new ToxScopeError('validation', 'request body is not valid UTF-8', { malformed: true });
    }
    let json: unknown = {};
    if (text.trim() === '' && !optional) throw new ToxScopeError('validation', 'request body is empty: expected a JSON object', { malformed: true });
    if (text.trim() !== '') {
      const problem = jsonShapeProblem(text, JSON_LIMITS);
      if (problem?.kind === 'depth') throw new ToxScopeError('validation', `request body nests deeper than ${problem.limit} levels of arrays and objects`, { malformed: true });
      if (problem?.kind === 'values')
        throw new ToxScopeError('payload_too_large', `request body holds more than ${problem.limit} JSON values`, { limit: problem.limit });
      try {
        json = JSON.parse(text);
      } catch (e) {
        throw new ToxScopeError('validation', `request body is not valid JSON: ${(e as Error).message}`, { malformed: true });
      }
    }
    // the validator reads the body with c.req.json() only under a JSON media type: give it the value parsed here
    if (type === '') c.req.raw.headers.set('content-type', 'application/json');
    Object.defineProperty(c.req, 'json', { value: () => Promise.resolve(json), configurable: true });
    await next();
  };
}

/**
 * Checks the parsed JSON body against `schema` with @hono/zod-validator; its hook throws a 'validation' error
 * naming the fields (app.onError answers it). The handler reads the body with c.req.valid('json').
 */
export const valid = <S extends z.ZodType>(schema: S) =>
  zValidator('json', schema, (result) => {
    if (!result.success) throw validationFailure(result.error.issues, 'body');
  });

/**
 * Checks a form body (urlencoded or multipart) against `schema` (c.req.valid('form')); a body that cannot be
 * parsed as the form its Content-Type says is a 400 (the validator's HTTPException, mapped by app.onError).
 */
export const validForm = <S extends z.ZodType>(schema: S) =>
  zValidator('form', schema, (result) => {
    if (!result.success) throw validationFailure(result.error.issues, 'form');
  });

export function validationFailure(issues: readonly z.core.$ZodIssue[], where: string): ToxScopeError {
  const named = issues.slice(0, 5).map((i) => `${[where, ...i.path.map(String)].join('.')}: ${i.message}`);
  const more = issues.length > 5 ? ` (and ${issues.length - 5} more)` : '';
  return new ToxScopeError('validation', named.join('; ') + more, { issues: issues.slice(0, 20) });
}
