import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTokenizer, packagedTokenizerPath, Tokenizer } from '../src/engine/tokenizer.js';

const MULTILINGUAL = [
  'Hello world',
  'You are a complete idiot, aren\'t you?',
  '😀 café 你好 مرحبا',
  '我们今天去公园散步，天气很好。',
  'مرحبا بكم في عالم البرمجة',
  'Привет, как дела? Всё хорошо.',
  'नमस्ते दुनिया',
  'family 👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵 and 🫠🪿',
  'tabs\tand\nnewlines\r\n  spaces   ',
  'a<|im_start|>b<|endoftext|>',
  'a lone surrogate \ud800 here',
  '',
];

describe('Qwen3 tokenizer', () => {
  let tok: Tokenizer;
  beforeAll(async () => {
    tok = await loadTokenizer();
  });

  it('encodes as the real Qwen3 tokenizer does, with no BOS', () => {
    expect(tok.encode('Hello world')).toEqual([9707, 1879]);
    expect(tok.encode('<|endoftext|>')).toEqual([151643]);
    expect(tok.encode('')).toEqual([]);
    expect(tok.decode(tok.encode(MULTILINGUAL[2]))).toBe(MULTILINGUAL[2]);
  });

  it('pads with <|endoftext|> and knows its vocabulary size', () => {
    expect(tok.padId).toBe(151643);
    expect(tok.vocabSize).toBe(151669); // 151643 BPE tokens + 26 added tokens
  });

  it('loads the packaged tokenizer.json when no model directory is given, and caches it', async () => {
    expect(tok.path).toBe(packagedTokenizerPath());
    expect(tok.path.endsWith('tokenizer.json')).toBe(true);
    expect(await loadTokenizer()).toBe(tok);
  });

  it('gives offsets in UTF-16 code units of the original string', () => {
    expect(tok.encodeWithOffsets('Hello world').offsets).toEqual([[0, 5], [5, 11]]);
    // '😀' is 2 code units; ' café' follows it; '你好' is one token.
    const { ids, offsets } = tok.encodeWithOffsets('😀 café 你好');
    expect(ids).toEqual(tok.encode('😀 café 你好'));
    expect(offsets.slice(0, 2)).toEqual([[0, 2], [2, 7]]);
    expect(offsets.at(-1)).toEqual([8, 10]);
  });

  it('gives every token the exact text it decodes to, across scripts', () => {
    for (const text of MULTILINGUAL) {
      const { ids, offsets } = tok.encodeWithOffsets(text);
      expect(ids).toEqual(tok.encode(text));
      expect(offsets).toHaveLength(ids.length);
      let end = 0;
      ids.forEach((id, i) => {
        const [s, e] = offsets[i];
        expect(s).toBeGreaterThanOrEqual(0);
        expect(e).toBeGreaterThan(s);
        expect(e).toBeLessThanOrEqual(text.length);
        expect(s).toBeGreaterThanOrEqual(end - 2); // only a split character (at most 2 code units) is shared
        end = Math.max(end, e);
        const piece = tok.decode([id]);
        // Whole-character tokens decode to exactly their span; a token holding part of a character decodes to U+FFFD.
        if (!piece.includes('\uFFFD')) expect(text.slice(s, e), `${JSON.stringify(text)} token ${i}`).toBe(piece);
      });
      expect(end).toBe(text.length);
    }
  });

  it('gives every piece of a character split over several tokens the whole character', () => {
    // A rare emoji is split into byte tokens: each covers the emoji's 2 code units.
    const text = 'x🪿';
    const { ids, offsets } = tok.encodeWithOffsets(text);
    const goose = offsets.filter(([s]) => s === 1);
    expect(ids.length).toBeGreaterThan(2);
    expect(goose.length).toBe(ids.length - 1);
    for (const o of goose) expect(o).toEqual([1, 3]);
  });

  it('maps offsets through NFC normalisation back to the original string', () => {
    // 'e' + combining acute (2 code units) normalises to 'é': 'café ok' is 'ca' | 'fé' | ' ok'.
    const text = 'cafe\u0301 ok';
    const { ids, offsets } = tok.encodeWithOffsets(text);
    expect(ids).toEqual(tok.encode('café ok'));
    expect(ids).toHaveLength(3);
    expect(offsets).toEqual([[0, 2], [2, 5], [5, 8]]);
  });

  it('truncates each text of a batch to maxTokens without padding', () => {
    const texts = ['Hello world', 'one two three four five six', ''];
    const full = texts.map((t) => tok.encode(t));
    expect(tok.encodeBatch(texts)).toEqual(full);
    expect(tok.encodeBatch(texts, { maxTokens: 3 })).toEqual([full[0], full[1].slice(0, 3), []]);
    expect(() => tok.encodeBatch(texts, { maxTokens: 0 })).toThrow(/maxTokens must be a positive integer/);
  });
});

describe('tokenizer from a checkpoint directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'toxscope-tok-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prefers the directory\'s tokenizer.json and tokenizer_config.json', async () => {
    copyFileSync(packagedTokenizerPath(), join(dir, 'tokenizer.json'));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ pad_token: '<|im_end|>' }));
    const tok = await loadTokenizer(dir);
    expect(tok.path).toBe(join(dir, 'tokenizer.json'));
    expect(tok.padId).toBe(151645);
    expect(tok.encode('Hello world')).toEqual([9707, 1879]);
  });

  it('falls back to the packaged tokenizer when the directory has none', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'toxscope-tok-empty-'));
    try {
      expect((await loadTokenizer(empty)).path).toBe(packagedTokenizerPath());
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('fails with the file named when tokenizer.json is corrupted', async () => {
    const bad = mkdtempSync(join(tmpdir(), 'toxscope-tok-bad-'));
    try {
      writeFileSync(join(bad, 'tokenizer.json'), '{"model": ');
      await expect(loadTokenizer(bad)).rejects.toThrow(new RegExp(`${join(bad, 'tokenizer.json')}: not valid JSON`));
    } finally {
      rmSync(bad, { recursive: true, force: true });
    }
  });
});
