/**
 * Reading request bodies (`optional`: an empty body reads as {}): strict UTF-8, JSON, then a zod schema. Malformed bodies are 400
 * (details.malformed); well-formed bodies of the wrong shape are validation errors naming the field.
 */
import type { Context } from 'hono';
import type { z } from 'zod';
import { ToxScopeError } from '../errors.js';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export async function readJson<S extends z.ZodType>(c: Context, schema: S, { optional = false } = {}): Promise<z.infer<S>> {
  const type = c.req.header('content-type') ?? '';
  if (type !== '' && !/^application\/([\w.+-]+\+)?json\b/i.test(type))
    throw new ToxScopeError('validation', `request body must be JSON (Content-Type: application/json), got '${type}'`, { malformed: true });
  const bytes = new Uint8Array(await c.req.arrayBuffer());
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw new ToxScopeError('validation', 'request body is not valid UTF-8', { malformed: true });
  }
  if (text.trim() === '' && optional) return parseWith(schema, {}, 'body');
  if (text.trim() === '') throw new ToxScopeError('validation', 'request body is empty: expected a JSON object', { malformed: true });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ToxScopeError('validation', `request body is not valid JSON: ${(e as Error).message}`, { malformed: true });
  }
  return parseWith(schema, json, 'body');
}

export function parseWith<S extends z.ZodType>(schema: S, value: unknown, where: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issues = r.error.issues.slice(0, 5).map((i) => `${[where, ...i.path.map(String)].join('.')}: ${i.message}`);
  const more = r.error.issues.length > 5 ? ` (and ${r.error.issues.length - 5} more)` : '';
  throw new ToxScopeError('validation', issues.join('; ') + more, { issues: r.error.issues.slice(0, 20) });
}
