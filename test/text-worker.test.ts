/**
 * Issue #10 item 1: a request's texts are normalised, identified and tokenized on a worker thread, in turns shared
 * with the other requests, and refused at the token budget without tokenizing them whole, with the real Qwen3
 * tokenizer and fastText identifier. What the worker gives must be exactly what the main-thread pipeline gave.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLanguageIdentifier, type LanguageIdentifier, resolveLanguages } from '../src/engine/language.js';
import { normalizeText, originalOffsets } from '../src/engine/normalize.js';
import { encodeSegments, segmentTokens } from '../src/engine/segments.js';
import { offsetPairs } from '../src/engine/text-prep.js';
import { TextWorker } from '../src/engine/text-worker.js';
import { loadTokenizer, packagedTokenizerPath, type Tokenizer } from '../src/engine/tokenizer.js';

const prose = (n: number) => Array.from({ length: Math.ceil(n / 30) }, (_, i) => `sentence ${i} says something. `).join('').slice(0, n);

let worker: TextWorker;
let tok: Tokenizer;
let lid: LanguageIdentifier;
beforeAll(async () => {
  [worker, tok, lid] = await Promise.all([TextWorker.open(), loadTokenizer(), createLanguageIdentifier()]);
}, 120_000);
afterAll(() => worker?.close());

/** The pipeline as the classifier ran it on the main thread before the worker existed. */
function onMainThread(texts: string[], language?: string | (string | null)[]) {
  const normalized = texts.map((t) => normalizeText(t));
  const languages = resolveLanguages(normalized.map((n) => n.text), language, lid);
  return normalized.map((n, i) => {
    const e = tok.encodeWithOffsets(n.text);
    return { ids: e.ids, offsets: originalOffsets(n, e.offsets), segments: segmentTokens(n.text, e.offsets), segmentIds: encodeSegments(tok, n.text, e.offsets), language: languages[i] };
  });
}

describe('the tokenizer worker', () => {
  it('gives the same tokens, offsets into the original strings, segments and languages as the main-thread pipeline', async () => {
    const texts = [
      'You are an idiot. Have a nice day!',
      'ｙｏｕ ａｒｅ ａｎ ｉｄｉｏｔ', // fullwidth: NFKC
      'id\u200Biot and\u00A0\u00A0 spaced\n\n\nout', // zero-width, no-break spaces, line breaks
      'Cafe\u0301 crème brûlée, 你好，世界。 😀 Guten Morgen zusammen, wie geht es euch?',
      prose(3000),
      'نص عربي قصير مع بعض الكلمات',
    ];
    const hints = [null, 'en', null, null, 'en', null];
    const got = await worker.prepare({ texts, hints, maxTokens: 100_000 });
    const want = onMainThread(texts, hints);
    expect(got.map((p) => ({ ids: p.ids, offsets: offsetPairs(p.offsets), segments: p.segments, segmentIds: p.segmentIds, language: p.language }))).toEqual(want);
  });

  it('tokenizes on its own thread, not the main one', async () => {
    const before = await worker.stats();
    await worker.prepare({ texts: [prose(2000)], hints: ['en'], maxTokens: 100_000 });
    const after = await worker.stats();
    expect(after.threadId).not.toBe(0); // the main thread's id is 0
    const text = normalizeText(prose(2000)).text;
    // one tokenizer call per piece of the text, then one per segment (each sentence and window tokenized alone)
    expect(after.pieces - before.pieces).toBe(tok.splitPieces(text).length + segmentTokens(text, tok.encodeWithOffsets(text).offsets).length);
    expect((await worker.tokenizer()).path).toBe(packagedTokenizerPath());
  });

  it('refuses a request over the token budget after tokenizing at most the budget plus one piece', async () => {
    const word = 'a'.repeat(100_000); // no boundary anywhere: only hard cuts
    const pieceTokens = Math.max(...tok.splitPieces(word).map(([s, e]) => tok.encode(word.slice(s, e)).length));
    const before = await worker.stats();
    const e = await worker.prepare({ texts: [word], hints: [null], maxTokens: 1000 }).catch((x) => x);
    const after = await worker.stats();
    expect(e.kind).toBe('payload_too_large');
    expect(e.details.tokenized.tokens).toBeGreaterThan(1000);
    expect(e.details.tokenized.tokens).toBeLessThanOrEqual(1000 + pieceTokens);
    expect(after.chars - before.chars).toBe(e.details.tokenized.chars);
    expect(after.chars - before.chars).toBeLessThan(word.length / 10);

    const ten = Array.from({ length: 10 }, () => prose(100_000));
    const e10 = await worker.prepare({ texts: ten, hints: ten.map(() => null), maxTokens: 2000 }).catch((x) => x);
    expect(e10.kind).toBe('payload_too_large');
    expect(e10.details.text).toBe(0);
    expect(e10.details.tokenized.chars).toBeLessThan(100_000);
  });

  it('answers a short request sent after a long one first (requests take turns)', async () => {
    const order: string[] = [];
    const long = worker.prepare({ texts: ['a'.repeat(100_000), prose(100_000)], hints: [null, null], maxTokens: 1_000_000 }).then(() => order.push('long'));
    const short = worker.prepare({ texts: ['have a nice day'], hints: [null], maxTokens: 1000 }).then(() => order.push('short'));
    await Promise.all([long, short]);
    expect(order).toEqual(['short', 'long']);
  });

  it('stops a request whose client left or whose deadline passed, and keeps serving', async () => {
    const client = new AbortController();
    const gone = worker.prepare({ texts: [prose(100_000)], hints: [null], maxTokens: 1_000_000, signal: client.signal }).catch((x) => x);
    setImmediate(() => client.abort());
    expect((await gone).kind).toBe('aborted');
    const late = await worker.prepare({ texts: [prose(100_000)], hints: [null], maxTokens: 1_000_000, deadline: performance.now() + 1 }).catch((x) => x);
    expect(late.kind).toBe('timeout');
    expect((await worker.prepare({ texts: ['still here'], hints: ['en'], maxTokens: 100 }))[0].ids.length).toBeGreaterThan(0);
  });

  it('refuses texts with no visible characters and malformed input with the pipeline\'s own errors', async () => {
    const e = await worker.prepare({ texts: ['ok', '\u200B \u200D'], hints: [null, null], maxTokens: 100 }).catch((x) => x);
    expect(e.kind).toBe('validation');
    expect(e.message).toMatch(/texts\[1\] has no visible characters/);
  });

  it('is replaced by a new worker on the next request after it dies', async () => {
    const w = await TextWorker.open();
    try {
      await w.kill();
      const got = await w.prepare({ texts: ['hello world'], hints: ['en'], maxTokens: 100 });
      expect(got[0].ids).toEqual(tok.encode('hello world'));
      expect(w.replaced).toBe(1);
    } finally {
      await w.close();
    }
  }, 120_000);

  it("builds a model directory's tokenizer in the worker and refuses a broken one with a format error", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'toxscope-text-worker-'));
    try {
      writeFileSync(join(dir, 'tokenizer.json'), '{ not json');
      const e = await TextWorker.open({ modelDir: dir }).catch((x) => x);
      expect(e.kind).toBe('format');
      expect(e.message).toMatch(/tokenizer\.json: not valid JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
