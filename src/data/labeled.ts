/**
 * Labeled texts from JSON Lines: one object per line,
 *
 *   {"text": "...", "label": 0 | 1, "lang": "en", "source": "davidson", "meta": {...},
 *    "attributes": {"insult": 0 | 1 | null, "identity_attack": ...}}
 *
 * `label` is toxicity; `attributes` (optional) holds a column per further attribute, null or absent where the
 * text was not labeled for it (each attribute's head trains on the texts that have its label).
 * read from a file or from every *.jsonl file of a directory (sorted by name, not recursive).
 * Blank lines are skipped; any other malformed line is an error naming file:line and the field.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { validationError, ToxScopeError } from '../errors.js';
import { stratifiedSplit } from '../head/split.js';

export interface LabeledText {
  text: string;
  /** 1 = toxic */
  label: 0 | 1;
  /** ISO-639 code, lower case */
  lang: string;
  source?: string;
  meta?: Record<string, unknown>;
  /** further attributes' labels (null: not labeled for it) */
  attributes?: Record<string, 0 | 1 | null>;
  /** where it was read: file and 1-based line */
  file: string;
  line: number;
}

export const ATTRIBUTE_NAME = /^[a-z][a-z0-9_]{0,63}$/;

const lineSchema = z.object({
  text: z.string().refine((t) => t.trim().length > 0, 'must be a non-empty string'),
  label: z.union([z.literal(0), z.literal(1)], { error: 'must be 0 or 1' }),
  lang: z.string().regex(/^[a-z]{2,3}(-[a-z0-9]+)*$/i, 'must be a language code such as "en" or "pt-br"'),
  source: z.string().optional(),
  meta: z.record(z.string(), z.unknown()).optional(),
  attributes: z.record(
    z.string().regex(ATTRIBUTE_NAME, 'attribute names are lower-case snake_case such as "identity_attack"'),
    z.union([z.literal(0), z.literal(1), z.null()], { error: 'must be 0, 1 or null' }),
  ).optional(),
});

export function readLabeledFile(file: string): LabeledText[] {
  let content: string;
  try {
    content = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ToxScopeError('not_found', `${file}: cannot read labeled data (${(e as Error).message})`);
  }
  const out: LabeledText[] = [];
  const lines = content.split('\n');
  lines.forEach((raw, i) => {
    const text = raw.trim();
    if (text === '') return;
    const where = `${file}:${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw validationError(`${where}: not valid JSON (${(e as Error).message})`);
    }
    const parsed = lineSchema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue.path.length ? issue.path.join('.') : '(line)';
      throw validationError(`${where}: ${field}: ${issue.message}`);
    }
    const { text: t, label, lang, source, meta, attributes } = parsed.data;
    if (attributes && 'toxicity' in attributes) throw validationError(`${where}: attributes.toxicity: toxicity is the "label" field`);
    out.push({ text: t, label, lang: lang.toLowerCase(), source, meta, ...(attributes && { attributes }), file, line: i + 1 });
  });
  return out;
}

/** A file, or every *.jsonl file in a directory (sorted by name). */
export function readLabeled(path: string): LabeledText[] {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    throw new ToxScopeError('not_found', `${path}: no such file or directory`);
  }
  if (!isDir) return readLabeledFile(path);
  const files = readdirSync(path).filter((f) => f.endsWith('.jsonl')).sort();
  if (files.length === 0) throw validationError(`${path}: directory holds no .jsonl files`);
  return files.flatMap((f) => readLabeledFile(join(path, f)));
}

/** Texts and toxic texts per language, languages sorted. */
export function summarize(texts: readonly LabeledText[]): Record<string, { n: number; toxic: number }> {
  const out: Record<string, { n: number; toxic: number }> = {};
  for (const lang of [...new Set(texts.map((t) => t.lang))].sort()) out[lang] = { n: 0, toxic: 0 };
  for (const t of texts) {
    out[t.lang].n++;
    out[t.lang].toxic += t.label;
  }
  return out;
}

/** sha256 over (label, lang, text) of every text in order: identifies a training set in a manifest. */
export function digest(texts: readonly LabeledText[]): string {
  const h = createHash('sha256');
  for (const t of texts) h.update(JSON.stringify([t.label, t.lang, t.text]) + '\n');
  return h.digest('hex');
}

/** Seeded split stratified by language and label; `holdout` gets `fraction` of each stratum. */
export function splitLabeled<T extends { label: number; lang: string }>(texts: readonly T[], fraction: number, seed: number): { train: T[]; holdout: T[] } {
  const s = stratifiedSplit(texts.map((t) => t.label), texts.map((t) => t.lang), fraction, seed);
  return { train: s.train.map((i) => texts[i]), holdout: s.holdout.map((i) => texts[i]) };
}
