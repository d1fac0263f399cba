/**
 * The bundle's further attributes: one calibrated head per attribute (insult, identity_attack, ...), each with
 * its own per-language thresholds, all reading the same SAE features and the same fitted transform as the
 * toxicity head (head.json). Toxicity is always there and is not repeated here.
 *
 *   <bundle>/attributes.json   { "format": "toxscope-attributes", "version": 1, "heads": { "<name>": <head JSON> } }
 */
import { z } from 'zod';
import { formatError } from '../errors.js';
import { ATTRIBUTE_NAME } from '../data/labeled.js';
import { describeZodError } from '../head/encoding.js';
import { Head } from '../head/head.js';

export const ATTRIBUTES_FILE = 'attributes.json';

const attributesSchema = z.object({
  format: z.literal('toxscope-attributes'),
  version: z.literal(1),
  heads: z.record(z.string().regex(ATTRIBUTE_NAME), z.unknown()),
});

export function attributesToJSON(heads: Readonly<Record<string, Head>>): unknown {
  return { format: 'toxscope-attributes', version: 1, heads: Object.fromEntries(Object.keys(heads).sort().map((n) => [n, heads[n].toJSON()])) };
}

export function attributesFromJSON(json: unknown, source: string): Record<string, Head> {
  const parsed = attributesSchema.safeParse(json);
  if (!parsed.success) throw formatError(describeZodError(source, parsed.error));
  if ('toxicity' in parsed.data.heads) throw formatError(`${source}: heads.toxicity: the toxicity head is head.json`);
  return Object.fromEntries(Object.entries(parsed.data.heads).map(([name, j]) => [name, Head.fromJSON(j, `${source}: heads.${name}`)]));
}

export { defaultOpenAiCategories } from '../head/attributes.js';
