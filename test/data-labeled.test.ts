import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { digest, readLabeled, readLabeledFile, splitLabeled, summarize } from '../src/data/labeled.js';
import { isToxScopeError } from '../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'toxscope-data-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const write = (name: string, lines: unknown[]) => {
  const path = join(dir, name);
  writeFileSync(path, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return path;
};
const line = (text: string, label: number, lang: string, extra: object = {}) => ({ text, label, lang, ...extra });

function errorOf(f: () => unknown): Error & { kind?: string } {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

describe('labeled jsonl', () => {
  it('reads texts, labels, languages, sources and meta, skipping blank lines', () => {
    const path = write('a.jsonl', [line('hello', 0, 'en', { source: 's', meta: { id: 3 } }), '', line('Idiot!', 1, 'DE')]);
    const texts = readLabeledFile(path);
    expect(texts).toEqual([
      { text: 'hello', label: 0, lang: 'en', source: 's', meta: { id: 3 }, file: path, line: 1 },
      { text: 'Idiot!', label: 1, lang: 'de', source: undefined, meta: undefined, file: path, line: 3 },
    ]);
  });

  it('reads every .jsonl file of a directory in name order', () => {
    const sub = mkdtempSync(join(dir, 'set-'));
    writeFileSync(join(sub, 'b.jsonl'), JSON.stringify(line('b', 1, 'fr')) + '\n');
    writeFileSync(join(sub, 'a.jsonl'), JSON.stringify(line('a', 0, 'en')) + '\n');
    writeFileSync(join(sub, 'notes.txt'), 'not data');
    expect(readLabeled(sub).map((t) => t.text)).toEqual(['a', 'b']);
  });

  it('names file:line and the field for malformed lines', () => {
    const cases: [unknown, RegExp][] = [
      ['{"text": "x", "label": 1, ', /:2: not valid JSON/],
      [line('x', 2, 'en'), /:2: label: must be 0 or 1/],
      [line('x', '1' as unknown as number, 'en'), /:2: label: must be 0 or 1/],
      [{ label: 1, lang: 'en' }, /:2: text: /],
      [line('   ', 0, 'en'), /:2: text: must be a non-empty string/],
      [line('x', 0, 'english!'), /:2: lang: must be a language code/],
    ];
    cases.forEach(([bad, message], k) => {
      const path = write(`bad${k}.jsonl`, [line('fine', 0, 'en'), bad]);
      const err = errorOf(() => readLabeledFile(path));
      expect(err.message).toContain(`${path}:2:`);
      expect(err.message).toMatch(message);
      expect(isToxScopeError(err) && err.kind).toBe('validation');
    });
  });

  it('reports missing paths and empty directories clearly', () => {
    expect(errorOf(() => readLabeled(join(dir, 'nope.jsonl'))).message).toMatch(/nope\.jsonl: no such file or directory/);
    const empty = mkdtempSync(join(dir, 'empty-'));
    expect(errorOf(() => readLabeled(empty)).message).toMatch(/holds no \.jsonl files/);
  });

  it('summarises, digests and splits by language and label', () => {
    const texts = Array.from({ length: 40 }, (_, i) => ({ text: `t${i}`, label: (i % 2) as 0 | 1, lang: i < 24 ? 'en' : 'fr', file: 'x', line: i + 1 }));
    expect(summarize(texts)).toEqual({ en: { n: 24, toxic: 12 }, fr: { n: 16, toxic: 8 } });
    expect(digest(texts)).toBe(digest(texts.map((t) => ({ ...t, line: 0 }))));
    expect(digest(texts)).not.toBe(digest(texts.map((t, i) => (i === 5 ? { ...t, label: 0 as const } : t))));
    const { train, holdout } = splitLabeled(texts, 0.25, 1);
    expect(summarize(holdout)).toEqual({ en: { n: 6, toxic: 3 }, fr: { n: 4, toxic: 2 } });
    expect(train.length).toBe(30);
  });
});
