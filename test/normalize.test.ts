import { describe, expect, it } from 'vitest';
import { normalizeText, originalOffsets, originalSpan } from '../src/engine/normalize.js';
import { segmentTokens, sentenceBounds } from '../src/engine/segments.js';
import { loadTokenizer } from '../src/engine/tokenizer.js';

describe('normalizeText', () => {
  it('folds fullwidth and compatibility forms with NFKC and maps every character back to its source', () => {
    const original = 'ｙｏｕ ａｒｅ an ﬁend';
    const n = normalizeText(original);
    expect(n.text).toBe('you are an fiend');
    // the ligature "ﬁ" (one code unit) became "fi": both letters point at it
    const fi = n.text.indexOf('fi');
    expect(originalSpan(n, fi, fi + 2)).toEqual([original.indexOf('ﬁ'), original.indexOf('ﬁ') + 1]);
    expect(originalSpan(n, 0, 3)).toEqual([0, 3]);
  });

  it('removes zero-width, bidi and control characters, so hidden ones cannot split or disguise a word', () => {
    expect(normalizeText('i\u200Bd\u200Ci\u200Do\u2060t\uFEFF').text).toBe('idiot');
    expect(normalizeText('\u202Eidiot\u202C \u2066x\u2069').text).toBe('idiot x');
    expect(normalizeText('a\u0000b\u0007c\u00ADd').text).toBe('abcd');
  });

  it('collapses whitespace runs to one space, or one line break when the run holds one, and trims', () => {
    expect(normalizeText('  a \t\u00A0 b\u3000c  ').text).toBe('a b c');
    expect(normalizeText('first.\r\n\r\n  second').text).toBe('first.\nsecond');
  });

  it('composes a letter with its combining mark (NFKC per base character and its marks)', () => {
    const n = normalizeText('cafe\u0301!');
    expect(n.text).toBe('café!');
    expect(originalSpan(n, 3, 4)).toEqual([3, 5]);
  });

  it('leaves nothing of texts without visible characters', () => {
    for (const t of ['   ', '\u0000\u0000', '\u200B\u200D\uFEFF', '\n\t \u3000', '\u202E\u2066']) expect(normalizeText(t).text).toBe('');
  });

  it('keeps surrogate pairs whole and token offsets point into the original string', async () => {
    const tokenizer = await loadTokenizer();
    const original = '\u200B ｈｅｌｌｏ 😀  wörld';
    const n = normalizeText(original);
    const e = tokenizer.encodeWithOffsets(n.text);
    const offsets = originalOffsets(n, e.offsets);
    const pieces = offsets.map(([s, t]) => original.slice(s, t));
    expect(pieces[0]).toBe('ｈｅｌｌｏ');
    expect(pieces).toContain(' 😀');
    expect(pieces.join('')).toBe('ｈｅｌｌｏ 😀  wörld');
    for (const [s, t] of offsets) expect(0 <= s && s <= t && t <= original.length).toBe(true);
  });
});

describe('segmentTokens', () => {
  it('cuts a text into sentence token ranges that cover every token once', async () => {
    const tokenizer = await loadTokenizer();
    const text = 'Have a nice day. Thanks for the help!\nYou are an idiot.';
    const e = tokenizer.encodeWithOffsets(text);
    const segs = segmentTokens(text, e.offsets);
    expect(segs.length).toBe(3);
    expect(segs[0].from).toBe(0);
    expect(segs[segs.length - 1].to).toBe(e.ids.length);
    for (let i = 1; i < segs.length; i++) expect(segs[i].from).toBe(segs[i - 1].to);
    const last = segs[2];
    expect(text.slice(e.offsets[last.from][0], e.offsets[last.to - 1][1]).trim()).toBe('You are an idiot.');
  });

  it('gives no segments for a single sentence, and cuts long sentences to the token cap', () => {
    expect(segmentTokens('just one sentence', [[0, 4], [4, 8], [8, 17]])).toEqual([]);
    const offsets = Array.from({ length: 10 }, (_, i) => [i, i + 1] as [number, number]);
    expect(segmentTokens('abcdefghij', offsets, { maxTokens: 4, windowTokens: 0 })).toEqual([{ from: 0, to: 4 }, { from: 4, to: 8 }, { from: 8, to: 10 }]);
    expect(sentenceBounds('A. B.\nC')).toEqual([0, 3, 6]);
  });
});
