/** Shared config.json parsing for the families: zod issues turned into one format error that names the file. */
import type { z } from 'zod';
import { formatError } from '../../errors.js';

export function parseWith<T extends z.ZodType>(schema: T, raw: unknown, where: string, what: string): z.infer<T> {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw formatError(`${where}: not a ${what} config (${issues})`);
  }
  return r.data;
}
