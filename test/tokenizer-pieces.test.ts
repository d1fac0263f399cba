/**
 * Tokenizing in pieces (src/engine/tokenizer-pieces.ts) gives exactly the whole text's tokens at every soft
 * cut: checked on real posts in ten languages, cut into pieces far smaller than in production so that every
 * post is cut many times, and on text built to contain added tokens and the regex's edge cases.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { isSoftBoundary, PIECE_CHARS, splitPieces } from '../src/engine/tokenizer-pieces.js';
import { loadTokenizer, type Tokenizer } from '../src/engine/tokenizer.js';
import { goldensDir } from './helpers/goldens.js';

const DATA = join(goldensDir, '..', 'data', 'train');
const FILES = ['davidson_en.jsonl', 'germeval2018_de_train.jsonl', 'cold_zh_train.jsonl', 'curse_detection_ko.jsonl', 'kocohub_ko_train.jsonl', 'mlma.jsonl', 'mpold_ar.jsonl', 'offenseval2020_tr_train.jsonl', 'toldbr_pt.jsonl', 'paradetox_en.jsonl'];
const SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<think>', '</think>', '<tool_call>'];

function posts(perFile: number): string[] {
  return FILES.flatMap((f) =>
    readFileSync(join(DATA, f), 'utf8').split('\n').filter(Boolean).slice(0, perFile).map((l) => (JSON.parse(l) as { text: string }).text),
  );
}

/** The pieces' ids, each piece tokenized on its own (all pieces are below PIECE_CHARS: one BPE call each). */
const byPieces = (tok: Tokenizer, text: string, pieces: [number, number][]) => pieces.flatMap(([s, e]) => tok.encode(text.slice(s, e)));

describe('tokenizing in pieces', () => {
  let tok: Tokenizer;
  beforeAll(async () => {
    tok = await loadTokenizer();
  });

  it('gives the whole text its own tokens at every soft cut, in ten languages', () => {
    let compared = 0;
    let cuts = 0;
    const texts = posts(60);
    for (const text of texts) {
      const pieces = splitPieces(text, 24, SPECIALS);
      const soft = pieces.slice(1).every(([s]) => isSoftBoundary(text, s));
      if (!soft) continue;
      compared++;
      cuts += pieces.length - 1;
      expect(byPieces(tok, text, pieces), text).toEqual(tok.encode(text));
    }
    expect(compared).toBeGreaterThan(texts.length * 0.6);
    expect(cuts).toBeGreaterThan(texts.length);
  });

  it('never cuts inside an added token or a surrogate pair, and keeps the text whole', () => {
    const text = `hi <|endoftext|>there, 😀😀 you   said:<|im_start|>x, ${'ab😀'.repeat(30)} <think>ok</think>!`;
    for (const max of [6, 8, 11, 16, 23]) {
      const pieces = splitPieces(text, max, SPECIALS);
      expect(pieces.map(([s, e]) => text.slice(s, e)).join('')).toBe(text);
      for (const [s] of pieces.slice(1)) {
        for (const sp of SPECIALS) for (let at = text.indexOf(sp); at >= 0; at = text.indexOf(sp, at + 1)) expect(s <= at || s >= at + sp.length).toBe(true);
        expect(text.charCodeAt(s) >= 0xdc00 && text.charCodeAt(s) <= 0xdfff).toBe(false);
      }
      const soft = pieces.slice(1).every(([s]) => isSoftBoundary(text, s));
      if (soft) expect(byPieces(tok, text, pieces)).toEqual(tok.encode(text));
    }
  });

  it('cuts a long run with no boundary every PIECE_CHARS characters, and a short text not at all', () => {
    expect(splitPieces('a'.repeat(10))).toEqual([[0, 10]]);
    const pieces = splitPieces('a'.repeat(5 * PIECE_CHARS + 3));
    expect(pieces).toHaveLength(6);
    expect(pieces.every(([s, e]) => e - s <= PIECE_CHARS)).toBe(true);
  });

  it('encodes with offsets across pieces as one text', () => {
    const text = Array.from({ length: 400 }, (_, i) => `word${i}, more text here.`).join(' ');
    expect(text.length).toBeGreaterThan(2 * PIECE_CHARS);
    const { ids, offsets } = tok.encodeWithOffsets(text);
    expect(ids).toEqual(tok.encode(text));
    expect(offsets).toHaveLength(ids.length);
    expect(offsets[0][0]).toBe(0);
    expect(offsets.at(-1)![1]).toBe(text.length);
    for (let i = 1; i < offsets.length; i++) expect(offsets[i][0]).toBeGreaterThanOrEqual(offsets[i - 1][0]);
    // a soft-cut text: the same tokens as the tokenizer gives the whole (the HF tokenizer, one call)
    const pieces = tok.splitPieces(text);
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.slice(1).every(([s]) => isSoftBoundary(text, s))).toBe(true);
  });
});
