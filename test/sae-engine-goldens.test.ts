/**
 * The fused engine (Qwen3 to layer 2 + TopK encoder in one ONNX graph), with SAEs loaded from their
 * files, reproduces ../shared/goldens: top-k sets and values, dense codes and firing rates, for
 * right-padded, left-padded and unbatched runs of both reference SAEs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { denseRates, textFeatures } from '../src/engine/features.js';
import type { Padding } from '../src/engine/padding.js';
import type { TopKBatch } from '../src/engine/types.js';
import { denseCodes, preActivations } from '../src/model/sae/encode.js';
import { loadSae } from '../src/model/sae/load.js';
import type { TopKSae } from '../src/model/sae/types.js';
import { Goldens, goldenCheckpointDir, goldensDir, readManifest } from './helpers/goldens.js';

const TOL = 1e-4;
const cacheDir = mkdtempSync(join(tmpdir(), 'toxscope-sae-engine-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

/** The real tokens' codes of a batch, in text order: row b's tokens as [n_b] lists of (feature -> value). */
function realTokenCodes(top: TopKBatch): Map<number, number>[][] {
  const out: Map<number, number>[][] = [];
  for (let b = 0; b < top.batch; b++) {
    const row: Map<number, number>[] = [];
    for (let t = 0; t < top.seqLen; t++) {
      const bt = b * top.seqLen + t;
      if (!top.mask[bt]) continue;
      row.push(new Map(Array.from(top.indices.subarray(bt * top.k, (bt + 1) * top.k), (f, j) => [f, top.values[bt * top.k + j]])));
    }
    out.push(row);
  }
  return out;
}

/** Firing rates of every text, dense [d_sae] each. */
const rates = (top: TopKBatch, dSae: number) => textFeatures(top).map((tf) => Array.from(denseRates(tf, dSae)));

async function withEngine(sae: TopKSae, fn: (e: ForwardEngine) => Promise<void>): Promise<void> {
  const engine = await ForwardEngine.open({ modelDir: goldenCheckpointDir, layer: 2, sae, cacheDir, threads: 1 });
  try {
    await fn(engine);
  } finally {
    await engine.close();
  }
}

describe('fused engine + SAELens SAE (sae-saelens-L2) vs goldens', () => {
  const g = new Goldens('goldens.safetensors');
  afterAll(() => g.close());
  const sae = loadSae(join(goldensDir, 'sae-saelens-L2'));
  const seqs = readManifest().sequences;
  const K = 16;

  /** golden [6, 64, 16] top-k of the right-padded batch, per text, real tokens only */
  function goldenTopK(): Map<number, number>[][] {
    const idx = g.ints('right.sae.topk_indices').data;
    const val = g.f32('right.sae.topk_values').data;
    return seqs.map((s, b) => s.map((_, t) => new Map(idx.slice((b * 64 + t) * K, (b * 64 + t + 1) * K).map((f, j) => [f, val[(b * 64 + t) * K + j]]))));
  }
  /** Our pre-activations of the golden residual of text b, token t: to tell boundary ties from errors. */
  const resid = g.f32('right.resid_post'); // [4, 6, 64, 64]
  const preOf = (b: number, t: number) => preActivations(sae, resid.data.subarray(((2 * 6 + b) * 64 + t) * 64, ((2 * 6 + b) * 64 + t + 1) * 64));

  function expectTopKMatches(top: TopKBatch, label: string): void {
    const ours = realTokenCodes(top);
    const gold = goldenTopK();
    ours.forEach((row, b) =>
      row.forEach((codes, t) => {
        const want = gold[b][t];
        const pre = preOf(b, t);
        const kth = Math.min(...[...want.keys()].map((f) => pre[f]));
        for (const f of new Set([...codes.keys(), ...want.keys()])) {
          if (codes.has(f) && want.has(f)) expect(Math.abs(codes.get(f)! - want.get(f)!), `${label} text ${b} token ${t} feature ${f}`).toBeLessThan(TOL);
          else expect(Math.abs(pre[f] - kth), `${label} text ${b} token ${t}: feature ${f} in only one top-k, not a boundary tie`).toBeLessThan(1e-5);
        }
      }),
    );
  }

  for (const padding of ['right', 'left'] as Padding[]) {
    it(`${padding}-padded batch: top-k sets and values on every real token, firing rates exactly`, async () => {
      await withEngine(sae, async (engine) => {
        const top = await engine.runTopK(seqs, padding);
        expectTopKMatches(top, padding);
        const gold = g.f32('sae.firing_rates').data; // [6, 512]
        rates(top, 512).forEach((r, b) => expect(r, `${padding} text ${b}`).toEqual(Array.from(gold.subarray(b * 512, (b + 1) * 512))));
      });
    });
  }

  it('unbatched runs: each text alone gives the golden top-k and firing rates', async () => {
    await withEngine(sae, async (engine) => {
      const gold = g.f32('sae.firing_rates').data;
      for (let i = 0; i < seqs.length; i++) {
        const top = await engine.runTopK([seqs[i]]);
        const want = g.ints(`unbatched.${i}.sae.topk_indices`).data; // [n, 16]
        const ours = realTokenCodes(top)[0];
        expect(ours.length).toBe(seqs[i].length);
        ours.forEach((codes, t) => {
          const golden = new Set(want.slice(t * K, (t + 1) * K));
          const pre = preOf(i, t);
          const kth = Math.min(...[...golden].map((f) => pre[f]));
          for (const f of codes.keys()) if (!golden.has(f)) expect(Math.abs(pre[f] - kth), `unbatched ${i} token ${t} feature ${f}`).toBeLessThan(1e-5);
        });
        expect(rates(top, 512)[0], `unbatched ${i}`).toEqual(Array.from(gold.subarray(i * 512, (i + 1) * 512)));
      }
    });
  });
});

describe('fused engine + Qwen-Scope SAE (qscope-sae/layer2.sae.pt) vs goldens', () => {
  const g = new Goldens('qscope-goldens.safetensors');
  afterAll(() => g.close());
  let sae: TopKSae;
  beforeAll(() => {
    sae = loadSae(join(goldensDir, 'qscope-sae', 'layer2.sae.pt'), { k: 32 });
  });
  const seqs = readManifest('qscope-manifest.json').sequences;
  const S = 512;
  const T = 97;

  /** Dense codes of the real tokens of text b, [n_b, 512], from a TopKBatch. */
  function denseRow(top: TopKBatch, b: number): Float32Array {
    const rows: number[] = [];
    for (let t = 0; t < top.seqLen; t++) if (top.mask[b * top.seqLen + t]) rows.push(b * top.seqLen + t);
    const n = rows.length;
    const values = new Float32Array(n * top.k);
    const indices = new Int32Array(n * top.k);
    rows.forEach((bt, i) => {
      values.set(top.values.subarray(bt * top.k, (bt + 1) * top.k), i * top.k);
      indices.set(top.indices.subarray(bt * top.k, (bt + 1) * top.k), i * top.k);
    });
    return denseCodes({ n, k: top.k, values, indices }, S);
  }
  /** Golden dense codes [n_b, 512] of text b from a [5, 97, 512] tensor padded on `padding`. */
  function goldenRow(code: Float32Array, b: number, padding: Padding): Float32Array {
    const n = seqs[b].length;
    const start = padding === 'right' ? 0 : T - n;
    return code.subarray((b * T + start) * S, (b * T + start + n) * S);
  }
  const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

  for (const padding of ['right', 'left'] as Padding[]) {
    it(`${padding}-padded batch: codes within 1e-4 (kept zeros included), firing rates exactly`, async () => {
      await withEngine(sae, async (engine) => {
        const top = await engine.runTopK(seqs, padding);
        const code = g.f32(`${padding}.sae.L2.code`).data;
        let fewerThanK = 0;
        const positives = g.ints(`${padding}.sae.L2.positive_preacts`).data;
        seqs.forEach((s, b) => {
          const ours = denseRow(top, b);
          expect(ours.length).toBe(s.length * S);
          expect(maxDiff(ours, goldenRow(code, b, padding)), `${padding} text ${b}`).toBeLessThan(TOL);
        });
        for (let bt = 0; bt < 5 * T; bt++) if (top.mask[bt] && positives[bt] < 32) fewerThanK++;
        expect(fewerThanK).toBe(51);
        const gold = g.f32(`${padding}.sae.L2.firing_rates`).data; // [5, 512]
        rates(top, S).forEach((r, b) => expect(r, `${padding} text ${b}`).toEqual(Array.from(gold.subarray(b * S, (b + 1) * S))));
      });
    });
  }

  it('unbatched runs: each text alone gives the golden codes and firing rates', async () => {
    await withEngine(sae, async (engine) => {
      const code = g.f32('right.sae.L2.code').data;
      const gold = g.f32('right.sae.L2.firing_rates').data;
      for (let b = 0; b < seqs.length; b++) {
        const top = await engine.runTopK([seqs[b]]);
        expect(maxDiff(denseRow(top, 0), goldenRow(code, b, 'right')), `unbatched ${b}`).toBeLessThan(TOL);
        expect(rates(top, S)[0], `unbatched ${b}`).toEqual(Array.from(gold.subarray(b * S, (b + 1) * S)));
      }
    });
  });
});
