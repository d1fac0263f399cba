import { describe, expect, it } from 'vitest';
import { loadTokenizer } from '../src/engine/tokenizer.js';
import type { TopKBatch } from '../src/engine/types.js';
import { featureSpans, planWindows, sliceRow, stitch } from '../src/engine/windows.js';

describe('planWindows', () => {
  it('keeps a short text in one window', () => {
    expect(planWindows(5, 8, 2)).toEqual([{ start: 0, end: 5, own: 0 }]);
    expect(planWindows(8, 8, 2)).toEqual([{ start: 0, end: 8, own: 0 }]);
    expect(planWindows(0, 8, 2)).toEqual([]);
  });

  it('splits with the given overlap and makes every token owned by exactly one window', () => {
    for (const [n, W, o] of [[9, 8, 2], [20, 8, 2], [100, 16, 0], [101, 16, 15], [1000, 512, 64], [7, 2, 1]]) {
      const ws = planWindows(n, W, o);
      const owners = new Array(n).fill(0);
      for (const w of ws) {
        expect(w.end - w.start).toBeLessThanOrEqual(W);
        expect(w.own).toBeLessThan(w.end);
        for (let t = w.own; t < w.end; t++) owners[t]++;
      }
      expect(owners.every((c) => c === 1)).toBe(true);
      for (let i = 1; i < ws.length; i++) {
        expect(ws[i - 1].end - ws[i].start).toBe(o); // shared context
        expect(ws[i].own).toBe(ws[i - 1].end); // ownership continues where the previous window stopped
      }
      expect(ws[ws.length - 1].end).toBe(n);
    }
  });

  it('refuses an overlap as long as the window', () => {
    expect(() => planWindows(10, 4, 4)).toThrow(/overlap/);
  });
});

/**
 * A real per-token computation shaped like the SAE output: token t with id x fires feature (x mod 97)
 * with value 1 + position-in-window, and feature 96 never fires (value 0, kept but not firing).
 * Stitched owned tokens must give the features of the whole text token by token.
 */
function runWindows(ids: number[][], k = 2): TopKBatch {
  const B = ids.length;
  const T = Math.max(...ids.map((r) => r.length));
  const values = new Float32Array(B * T * k);
  const indices = new Int32Array(B * T * k);
  const mask = new Uint8Array(B * T);
  ids.forEach((row, b) =>
    row.forEach((x, t) => {
      mask[b * T + t] = 1;
      indices[(b * T + t) * k] = x % 97;
      values[(b * T + t) * k] = 1 + t;
      indices[(b * T + t) * k + 1] = 96;
    }),
  );
  return { batch: B, seqLen: T, k, values, indices, mask };
}

describe('stitch', () => {
  it('reassembles owned tokens of right-padded windows in text order, each once', () => {
    const ids = Array.from({ length: 23 }, (_, i) => i * 31 + 5);
    const ws = planWindows(ids.length, 8, 3);
    const batch = runWindows(ws.map((w) => ids.slice(w.start, w.end)));
    const codes = stitch(ws.map((w, r) => sliceRow(batch, r, w.own - w.start, w.end - w.start)));
    expect(codes.seqLen).toBe(ids.length);
    const fired = Array.from({ length: ids.length }, (_, t) => codes.indices[t * 2]);
    expect(fired).toEqual(ids.map((x) => x % 97));
    expect([...codes.mask].every((m) => m === 1)).toBe(true);
  });

  it('refuses to slice padding', () => {
    const batch = runWindows([[1, 2, 3], [4]]);
    expect(() => sliceRow(batch, 1, 0, 2)).toThrow(/padding/);
  });
});

describe('featureSpans', () => {
  it('maps fired tokens back to character spans of the original string, merging neighbours', async () => {
    const tok = await loadTokenizer();
    const text = 'Café 😀 idiots!! and more idiots, idiots.';
    const enc = tok.encodeWithOffsets(text);
    const target = enc.ids[enc.offsets.findIndex(([s, e]) => text.slice(s, e).includes('idiots'))];
    const k = 1;
    const codes: TopKBatch = {
      batch: 1,
      seqLen: enc.ids.length,
      k,
      values: Float32Array.from(enc.ids, (x) => (x === target ? 0.5 : 0)),
      indices: Int32Array.from(enc.ids),
      mask: new Uint8Array(enc.ids.length).fill(1),
    };
    const spans = featureSpans(codes, enc.offsets, target);
    expect(spans.length).toBe(3);
    for (const [s, e] of spans) expect(text.slice(s, e).trim()).toBe('idiots');
    expect(featureSpans(codes, enc.offsets, 12345)).toEqual([]);
    // a feature firing on every token gives one span covering the whole string, emoji included
    const everywhere = { ...codes, values: new Float32Array(enc.ids.length).fill(1), indices: new Int32Array(enc.ids.length).fill(7) };
    expect(featureSpans(everywhere, enc.offsets, 7)).toEqual([[0, text.length]]);
  });
});
