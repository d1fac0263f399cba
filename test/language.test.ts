import { readdirSync, readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { ToxScopeError } from '../src/errors.js';
import { createLanguageIdentifier, LanguageIdentifier, normalizeLanguageHint, resolveLanguages } from '../src/engine/language.js';

let lid: LanguageIdentifier;
beforeAll(async () => {
  lid = await createLanguageIdentifier();
});

describe('language identification (fastText lid.176, offline)', () => {
  it('identifies short sentences in the languages of the labeled data', () => {
    const cases: [string, string][] = [
      ['You are an absolute idiot', 'en'],
      ['Du bist ein Idiot und das weißt du', 'de'],
      ['Ты идиот!', 'ru'],
      ['أنت غبي جدا', 'ar'],
      ['你是个白痴', 'zh'],
      ['Bonjour tout le monde', 'fr'],
      ['Sen tam bir aptalsın', 'tr'],
      ['너는 정말 바보야', 'ko'],
      ['Você é um idiota completo', 'pt'],
    ];
    for (const [text, code] of cases) expect(lid.identify(text), text).toMatchObject({ code, source: 'detected' });
  });

  it('is right on at least 70% of real posts from every source and rarely confidently wrong', () => {
    const dir = '../shared/data/train';
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.jsonl'))) {
      const rows = readFileSync(`${dir}/${f}`, 'utf8').split('\n').filter(Boolean).slice(0, 100).map((l) => JSON.parse(l) as { text: string; lang: string });
      const tags = rows.map((r) => lid.identify(r.text));
      const right = tags.filter((t, i) => t.code === rows[i].lang).length;
      const wrong = tags.filter((t, i) => t.source === 'detected' && t.code !== rows[i].lang).length;
      expect(right / rows.length, f).toBeGreaterThanOrEqual(0.7);
      expect(wrong / rows.length, f).toBeLessThanOrEqual(0.06);
    }
  });

  it('falls back to und for text with no language signal, and reads past newlines', () => {
    for (const t of ['😀😀😀', '12345', '', '   ']) expect(lid.identify(t)).toMatchObject({ code: 'und', source: 'fallback' });
    expect(lid.identify('Guten Morgen,\nwie geht es dir heute?')).toMatchObject({ code: 'de', source: 'detected' });
  });
});

describe('language hints', () => {
  it('normalises tags to the primary subtag and rejects malformed ones', () => {
    expect(normalizeLanguageHint('pt-BR')).toBe('pt');
    expect(normalizeLanguageHint('EN')).toBe('en');
    expect(normalizeLanguageHint('zh_Hant')).toBe('zh');
    expect(normalizeLanguageHint('fil')).toBe('fil');
    for (const bad of ['english', 'e', '12', 'en--US', '']) expect(() => normalizeLanguageHint(bad)).toThrow(ToxScopeError);
  });

  it('uses one hint for all texts, per-text hints, and identifies where no hint is given', () => {
    const texts = ['Du bist ein Idiot und das weißt du', 'You are an absolute idiot'];
    expect(resolveLanguages(texts, 'fr', lid).map((t) => [t.code, t.source])).toEqual([['fr', 'hint'], ['fr', 'hint']]);
    expect(resolveLanguages(texts, ['de', null], lid).map((t) => [t.code, t.source])).toEqual([['de', 'hint'], ['en', 'detected']]);
    expect(resolveLanguages(texts, undefined, lid).map((t) => t.code)).toEqual(['de', 'en']);
    expect(() => resolveLanguages(texts, ['de'], lid)).toThrow(/1 codes for 2 texts/);
    expect(() => resolveLanguages(texts, ['de', 'x!'], lid)).toThrow(/language\[1\]/);
  });
});
