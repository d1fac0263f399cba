/**
 * Golden checks shared by every model family's folder in ../shared/goldens/<family>/ (qwen3-moe, qwen3.5,
 * qwen3.5-moe): their goldens.safetensors name tensors the same way (`right|left.resid_post.L` [S, T, D],
 * `unbatched.i.resid_post.L` [len, D], `right|left.sae.L<l>.topk_values|topk_indices` [S, T, k],
 * `right|left|unbatched.sae.L<l>.firing_rates` [S, d_sae]). Tests only.
 */
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { ForwardEngine, type ResidualBatch } from '../../src/engine/forward-engine.js';
import { denseRates, textFeatures } from '../../src/engine/features.js';
import type { TopKBatch } from '../../src/engine/types.js';
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from '../../src/model/safetensors.js';
import { Goldens, readManifest } from './goldens.js';

export const TOL = 1e-4;

export interface FamilyGoldens {
  goldens: Goldens;
  sequences: number[][];
  /** T of the padded batches */
  T: number;
  close(): void;
}

/** `folder` relative to ../shared/goldens, e.g. 'qwen3-moe'. */
export function openFamilyGoldens(folder: string): FamilyGoldens {
  const goldens = new Goldens(join(folder, 'goldens.safetensors'));
  const sequences = readManifest(join(folder, 'manifest.json')).sequences;
  return { goldens, sequences, T: Math.max(...sequences.map((s) => s.length)), close: () => goldens.close() };
}

/** Largest |ours - golden| over the real tokens of a padded batch; golden [S, T, D] with the same padding. */
export function maxErrRealTokens(out: ResidualBatch, golden: Float32Array): number {
  let worst = 0;
  const D = out.dModel;
  for (let bt = 0; bt < out.mask.length; bt++) {
    if (!out.mask[bt]) continue;
    for (let i = 0; i < D; i++) worst = Math.max(worst, Math.abs(out.resid[bt * D + i] - golden[bt * D + i]));
  }
  return worst;
}

/** The engine's residual after `layer` matches the goldens right-padded, left-padded and one text at a time. */
export async function expectResidualGoldens(engine: ForwardEngine, g: FamilyGoldens, layer: number, tol = TOL): Promise<void> {
  for (const padding of ['right', 'left'] as const) {
    const out = await engine.runResidual(g.sequences, padding);
    expect([out.batch, out.seqLen]).toEqual([g.sequences.length, g.T]);
    expect(Array.from(out.mask), `${padding} padding is the goldens' padding`).toEqual(g.goldens.ints(`${padding}.attention_mask`).data);
    expect(maxErrRealTokens(out, g.goldens.f32(`${padding}.resid_post.${layer}`).data), `${padding} layer ${layer}`).toBeLessThan(tol);
    expect(out.resid.every(Number.isFinite), 'pad positions stay finite').toBe(true);
  }
  for (let i = 0; i < g.sequences.length; i++) {
    const out = await engine.runResidual([g.sequences[i]]);
    expect(maxErrRealTokens(out, g.goldens.f32(`unbatched.${i}.resid_post.${layer}`).data), `text ${i} alone, layer ${layer}`).toBeLessThan(tol);
  }
}

/** Fired codes (feature -> value > 0) of every real token, text by text. */
function firedCodes(values: Float32Array, indices: ArrayLike<number>, mask: ArrayLike<number>, B: number, T: number, k: number): Map<number, number>[][] {
  return Array.from({ length: B }, (_, b) => {
    const row: Map<number, number>[] = [];
    for (let t = 0; t < T; t++) {
      const bt = b * T + t;
      if (!mask[bt]) continue;
      const m = new Map<number, number>();
      for (let j = 0; j < k; j++) if (values[bt * k + j] > 0) m.set(indices[bt * k + j], values[bt * k + j]);
      row.push(m);
    }
    return row;
  });
}

/**
 * The fused SAE tail reproduces the goldens at `saeLayer`: on every real token the same fired set with values
 * within `tol` (value-0 kept entries are not firing), and every text's firing rates exactly.
 */
export async function expectSaeGoldens(engine: ForwardEngine, g: FamilyGoldens, saeLayer: number, dSae: number, tol = TOL): Promise<void> {
  const check = (top: TopKBatch, side: 'right' | 'left', rows: number[], label: string) => {
    const gv = g.goldens.f32(`${side}.sae.L${saeLayer}.topk_values`);
    const gi = g.goldens.ints(`${side}.sae.L${saeLayer}.topk_indices`).data;
    const gm = g.goldens.ints(`${side}.attention_mask`).data;
    const [, T, k] = gv.shape;
    const want = firedCodes(gv.data, gi, gm, g.sequences.length, T, k);
    const ours = firedCodes(top.values, top.indices, top.mask, top.batch, top.seqLen, top.k);
    rows.forEach((goldenRow, b) => {
      expect(ours[b].length, `${label} text ${goldenRow} tokens`).toBe(want[goldenRow].length);
      ours[b].forEach((codes, t) => {
        const w = want[goldenRow][t];
        expect([...codes.keys()].sort((x, y) => x - y), `${label} text ${goldenRow} token ${t} fired set`).toEqual([...w.keys()].sort((x, y) => x - y));
        for (const [f, v] of codes) expect(Math.abs(v - w.get(f)!), `${label} text ${goldenRow} token ${t} feature ${f}`).toBeLessThan(tol);
      });
    });
  };
  const rates = (top: TopKBatch) => textFeatures(top).map((tf) => Array.from(denseRates(tf, dSae)));
  const all = g.sequences.map((_, i) => i);
  for (const side of ['right', 'left'] as const) {
    const top = await engine.runTopK(g.sequences, side);
    check(top, side, all, side);
    const gold = g.goldens.f32(`${side}.sae.L${saeLayer}.firing_rates`).data;
    rates(top).forEach((r, b) => expect(r, `${side} text ${b} firing rates`).toEqual(Array.from(gold.subarray(b * dSae, (b + 1) * dSae))));
  }
  const gold = g.goldens.f32(`unbatched.sae.L${saeLayer}.firing_rates`).data;
  for (let i = 0; i < g.sequences.length; i++) {
    const top = await engine.runTopK([g.sequences[i]]);
    check(top, 'right', [i], `text ${i} alone`);
    expect(rates(top)[0], `text ${i} alone firing rates`).toEqual(Array.from(gold.subarray(i * dSae, (i + 1) * dSae)));
  }
}

/**
 * A sharded copy of a single-file checkpoint in a fresh temporary directory: config.json, `shards` files
 * model-0000i-of-0000n.safetensors dealt round-robin (so every layer's tensors are split across files) and
 * model.safetensors.index.json, as real sharded checkpoints are laid out.
 */
export function shardedCopy(modelDir: string, shards: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'toxscope-sharded-'));
  copyFileSync(join(modelDir, 'config.json'), join(dir, 'config.json'));
  const st = SafetensorsFile.open(join(modelDir, 'model.safetensors'));
  const pad = (i: number) => String(i).padStart(5, '0');
  const parts: Record<string, TensorToWrite>[] = Array.from({ length: shards }, () => ({}));
  const weightMap: Record<string, string> = {};
  let total = 0;
  [...st.tensors.values()].forEach((info, i) => {
    parts[i % shards][info.name] = { dtype: info.dtype, shape: info.shape, data: st.readBytes(info.name) };
    weightMap[info.name] = `model-${pad((i % shards) + 1)}-of-${pad(shards)}.safetensors`;
    total += info.byteLength;
  });
  st.close();
  parts.forEach((p, s) => writeSafetensors(join(dir, `model-${pad(s + 1)}-of-${pad(shards)}.safetensors`), p, { format: 'pt' }));
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  return dir;
}
