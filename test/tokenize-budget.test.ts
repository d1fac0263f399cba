/**
 * Issue #10 item 1: a request over its token budget is refused without tokenizing it whole, and tokenizing
 * never holds the event loop (it yields between bounded slices), with the real Qwen3 tokenizer.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { tokenizeWithinBudget } from '../src/engine/tokenize-budget.js';
import { loadTokenizer, type Tokenizer } from '../src/engine/tokenizer.js';

/** The real tokenizer, counting the characters it was asked to tokenize. */
function counting(tok: Tokenizer) {
  const seen = { chars: 0, calls: 0 };
  return {
    seen,
    tokenizer: {
      splitPieces: (t: string) => tok.splitPieces(t),
      encodeWithOffsets: (t: string) => {
        seen.chars += t.length;
        seen.calls++;
        return tok.encodeWithOffsets(t);
      },
    },
  };
}

const prose = (n: number) => Array.from({ length: Math.ceil(n / 30) }, (_, i) => `sentence ${i} says something, `).join('').slice(0, n);

describe('tokenizing within a token budget', () => {
  let tok: Tokenizer;
  beforeAll(async () => {
    tok = await loadTokenizer();
  });

  it('refuses ten long texts over the budget after tokenizing a small part of them', async () => {
    const texts = Array.from({ length: 10 }, () => prose(20_000));
    const { tokenizer, seen } = counting(tok);
    const e = await tokenizeWithinBudget(tokenizer, texts, { maxTokens: 2000 }).catch((x) => x);
    expect(e.kind).toBe('payload_too_large');
    expect(e.message).toMatch(/than the limit of 2000 per request/);
    expect(seen.chars).toBeLessThan(0.1 * 200_000);
  });

  it('refuses one long text over the budget before its end', async () => {
    const { tokenizer, seen } = counting(tok);
    const e = await tokenizeWithinBudget(tokenizer, [prose(100_000)], { maxTokens: 1000 }).catch((x) => x);
    expect(e.kind).toBe('payload_too_large');
    expect(seen.chars).toBeLessThan(20_000);
  });

  it('gives the same tokens and offsets as tokenizing each text whole, within the budget', async () => {
    const texts = [prose(9000), 'short one', '你好，世界。'.repeat(500)];
    const got = await tokenizeWithinBudget(tok, texts, { maxTokens: 100_000 });
    expect(got).toEqual(texts.map((t) => tok.encodeWithOffsets(t)));
  });

  it('lets other work run while it tokenizes (yields between slices)', async () => {
    let ticks = 0;
    let running = true;
    const tick = () => {
      ticks++;
      if (running) setImmediate(tick);
    };
    setImmediate(tick);
    await tokenizeWithinBudget(tok, [prose(60_000), 'a'.repeat(30_000)], { maxTokens: 1_000_000, sliceMs: 5 });
    running = false;
    expect(ticks).toBeGreaterThan(5);
  });

  it('stops when the client leaves or the deadline passes', async () => {
    const gone = AbortSignal.abort();
    expect((await tokenizeWithinBudget(tok, [prose(5000)], { maxTokens: 1e6, signal: gone }).catch((x) => x)).kind).toBe('aborted');
    expect((await tokenizeWithinBudget(tok, [prose(5000)], { maxTokens: 1e6, deadline: performance.now() - 1 }).catch((x) => x)).kind).toBe('timeout');
  });

  it('refuses a text with no tokens', async () => {
    expect((await tokenizeWithinBudget(tok, ['ok', ''], { maxTokens: 100 }).catch((x) => x)).message).toMatch(/texts\[1\] has no tokens/);
  });
});
