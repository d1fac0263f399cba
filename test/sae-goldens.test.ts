/**
 * The pure-TS TopK encoder and firing rates reproduce ../shared/goldens (PyTorch float32 reference)
 * from the goldens' own residual streams, for both reference SAEs loaded from their files.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { denseRates, textFeatures } from '../src/engine/features.js';
import { TopKBatch } from '../src/engine/types.js';
import { denseCodes, encodeTopK, preActivations } from '../src/model/sae/encode.js';
import { loadSae } from '../src/model/sae/load.js';
import { Goldens, goldensDir } from './helpers/goldens.js';

const TOL = 1e-4;

/** Run the encoder on x [B*T, D] and package the codes as the engine would hand them over. */
function topKBatch(sae: ReturnType<typeof loadSae>, x: Float32Array, mask: number[], B: number, T: number): TopKBatch {
  const codes = encodeTopK(sae, x);
  return { batch: B, seqLen: T, k: codes.k, values: codes.values, indices: codes.indices, mask: Uint8Array.from(mask) };
}

/** Slice [L, ...rest] -> rest at index l. */
function layerSlice(data: Float32Array, shape: number[], l: number): Float32Array {
  const per = shape.slice(1).reduce((a, b) => a * b, 1);
  return data.subarray(l * per, (l + 1) * per);
}

/**
 * Top-k sets agree, except for features at the k-th boundary whose pre-activations tie within 1e-5
 * (the README's caveat): every feature in one set and not the other must sit at the boundary.
 */
function expectSameTopK(ours: number[], golden: number[], pre: Float32Array, where: string): void {
  const a = new Set(ours);
  const g = new Set(golden);
  const kth = Math.min(...ours.map((f) => pre[f]));
  for (const f of [...ours.filter((f) => !g.has(f)), ...golden.filter((f) => !a.has(f))])
    expect(Math.abs(pre[f] - kth), `${where}: feature ${f} differs from the reference top-k and is not a boundary tie`).toBeLessThan(1e-5);
}

describe('SAELens SAE (sae-saelens-L2) through the TS encoder', () => {
  const g = new Goldens('goldens.safetensors');
  afterAll(() => g.close());
  const sae = loadSae(join(goldensDir, 'sae-saelens-L2'));

  it('loads with the cfg: topk, k 16, layer 2, b_dec applied to the input', () => {
    expect(sae).toMatchObject({ format: 'saelens', dModel: 64, dSae: 512, k: 16, layer: 2 });
    expect(sae.inputBias).not.toBeNull();
  });

  it('reproduces hidden_pre, top-k sets and values of every unbatched sequence', () => {
    for (let i = 0; i < 6; i++) {
      const resid = g.f32(`unbatched.${i}.resid_post`); // [4, n, 64]
      const x = layerSlice(resid.data, resid.shape, 2); // [n, 64]
      const n = resid.shape[1];
      const pre = preActivations(sae, x);
      const goldPre = g.f32(`unbatched.${i}.sae.hidden_pre`).data; // [n, 512]
      let maxErr = 0;
      for (let j = 0; j < pre.length; j++) maxErr = Math.max(maxErr, Math.abs(pre[j] - goldPre[j]));
      expect(maxErr, `unbatched.${i} hidden_pre`).toBeLessThan(TOL);

      const codes = encodeTopK(sae, x);
      const gIdx = g.ints(`unbatched.${i}.sae.topk_indices`).data; // [n, 16]
      const gVal = g.f32(`unbatched.${i}.sae.topk_values`).data;
      for (let t = 0; t < n; t++) {
        const ours = Array.from(codes.indices.subarray(t * 16, (t + 1) * 16));
        const golden = gIdx.slice(t * 16, (t + 1) * 16);
        expectSameTopK(ours, golden, pre.subarray(t * 512, (t + 1) * 512), `unbatched.${i} token ${t}`);
        const goldByFeature = new Map(golden.map((f, j) => [f, gVal[t * 16 + j]]));
        ours.forEach((f, j) => {
          if (goldByFeature.has(f)) expect(Math.abs(codes.values[t * 16 + j] - goldByFeature.get(f)!)).toBeLessThan(TOL);
        });
      }
    }
  });

  it('reproduces the right-padded batch top-k on every real token', () => {
    const resid = g.f32('right.resid_post'); // [4, 6, 64, 64]
    const x = layerSlice(resid.data, resid.shape, 2); // [6*64, 64]
    const mask = g.ints('right.attention_mask').data; // [6, 64]
    const pre = preActivations(sae, x);
    const codes = encodeTopK(sae, x);
    const gIdx = g.ints('right.sae.topk_indices').data; // [6, 64, 16]
    let real = 0;
    for (let bt = 0; bt < 6 * 64; bt++) {
      if (!mask[bt]) continue;
      real++;
      const ours = Array.from(codes.indices.subarray(bt * 16, (bt + 1) * 16));
      expectSameTopK(ours, gIdx.slice(bt * 16, (bt + 1) * 16), pre.subarray(bt * 512, (bt + 1) * 512), `right token ${bt}`);
    }
    expect(real).toBe(1 + 3 + 7 + 16 + 33 + 64);
  });

  it('reproduces sae.firing_rates exactly from the right- and the left-padded batches', () => {
    const gold = g.f32('sae.firing_rates').data; // [6, 512]
    for (const side of ['right', 'left']) {
      const resid = g.f32(`${side}.resid_post`);
      const batch = topKBatch(sae, layerSlice(resid.data, resid.shape, 2), g.ints(`${side}.attention_mask`).data, 6, 64);
      const texts = textFeatures(batch);
      texts.forEach((tf, b) => expect(Array.from(denseRates(tf, 512)), `${side} text ${b}`).toEqual(Array.from(gold.subarray(b * 512, (b + 1) * 512))));
      expect(texts.map((t) => t.nTokens)).toEqual([1, 3, 7, 16, 33, 64]);
    }
  });
});

describe('Qwen-Scope SAE (qscope-sae/layer2.sae.pt) through the TS encoder', () => {
  const g = new Goldens('qscope-goldens.safetensors');
  afterAll(() => g.close());
  const sae = loadSae(join(goldensDir, 'qscope-sae'), { layer: 2, k: 32 });
  const B = 5;
  const T = 97;
  const S = 512;

  it('loads from the directory for layer 2: shapes from the tensors, no input bias', () => {
    expect(sae).toMatchObject({ format: 'qwen-scope', dModel: 64, dSae: 512, k: 32, layer: 2, inputBias: null });
    expect(sae.source).toBe(join(goldensDir, 'qscope-sae', 'layer2.sae.pt'));
  });

  for (const side of ['right', 'left'] as const) {
    it(`reproduces the ${side}-padded codes within 1e-4, positive pre-activation counts, and firing rates exactly`, () => {
      const x = g.f32(`${side}.resid_post.2`).data; // [5, 97, 64]
      const mask = g.ints(`${side}.attention_mask`).data; // [5, 97]
      const gold = g.f32(`${side}.sae.L2.code`).data; // [5, 97, 512]
      const positives = g.ints(`${side}.sae.L2.positive_preacts`).data; // [5, 97]
      const codes = encodeTopK(sae, x);
      const dense = denseCodes(codes, S);
      const pre = preActivations(sae, x);
      let maxErr = 0;
      let fewerThanK = 0;
      let realTokens = 0;
      for (let bt = 0; bt < B * T; bt++) {
        if (!mask[bt]) continue;
        realTokens++;
        for (let f = 0; f < S; f++) maxErr = Math.max(maxErr, Math.abs(dense[bt * S + f] - gold[bt * S + f]));
        const nPos = pre.subarray(bt * S, (bt + 1) * S).filter((v) => v > 0).length;
        expect(nPos, `token ${bt} positive pre-activations`).toBe(positives[bt]);
        const fired = codes.values.subarray(bt * 32, (bt + 1) * 32).filter((v) => v > 0).length;
        expect(fired, `token ${bt} fired features`).toBe(Math.min(32, nPos));
        if (nPos < 32) fewerThanK++;
      }
      expect(maxErr).toBeLessThan(TOL);
      expect(realTokens).toBe(155);
      expect(fewerThanK).toBe(51);

      const rates = g.f32(`${side}.sae.L2.firing_rates`).data; // [5, 512]
      const texts = textFeatures({ batch: B, seqLen: T, k: 32, values: codes.values, indices: codes.indices, mask: Uint8Array.from(mask) });
      texts.forEach((tf, b) => expect(Array.from(denseRates(tf, S)), `text ${b}`).toEqual(Array.from(rates.subarray(b * S, (b + 1) * S))));
    });
  }

  it('reproduces the codes from each unbatched residual', () => {
    const gold = g.f32('right.sae.L2.code').data; // [5, 97, 512], right padding: text i starts at row i*97
    for (let i = 0; i < B; i++) {
      const x = g.f32(`unbatched.${i}.resid_post.2`); // [n, 64]
      const dense = denseCodes(encodeTopK(sae, x.data), S);
      const n = x.shape[0];
      let maxErr = 0;
      for (let j = 0; j < n * S; j++) maxErr = Math.max(maxErr, Math.abs(dense[j] - gold[i * T * S + j]));
      expect(maxErr, `unbatched.${i}`).toBeLessThan(TOL);
    }
  });
});
