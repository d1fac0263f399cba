/**
 * The int8 engine (TOXSCOPE_PRECISION=int8) on the dense Qwen3 goldens: residual error within the bound measured
 * for int8, the exact-candidate SAE encoder equal to float32 on its own residual wherever it certifies so, the
 * served weights' size, the cache keeping f32 and int8 apart, and where the precision is decided.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { INT8_GRAPH_CHOICES } from '../src/model/blocks/int8.js';
import { CPU_AUTO_PRECISION, resolvePrecision } from '../src/engine/precision.js';
import { Checkpoint } from '../src/model/checkpoint.js';
import { WEIGHTS_FILE } from '../src/model/graph.js';
import { encodeTopK } from '../src/model/sae/encode.js';
import { loadSae } from '../src/model/sae/load.js';
import { openFamilyGoldens } from './helpers/family-goldens.js';
import { Goldens, goldenCheckpointDir, goldensDir, readManifest } from './helpers/goldens.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'toxscope-int8-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

const seqs = readManifest().sequences;

/** Relative RMS error of the real tokens of `got` [B, T', D] against golden layer L of right.resid_post [N, B, T, D]. */
function relRmsVsGolden(got: { resid: Float32Array; seqLen: number }, gold: { shape: number[]; data: Float32Array }, L: number): number {
  const [, B, T, D] = gold.shape;
  let num = 0, den = 0;
  for (let b = 0; b < B; b++)
    for (let t = 0; t < seqs[b].length; t++)
      for (let i = 0; i < D; i++) {
        const want = gold.data[((L * B + b) * T + t) * D + i];
        num += (got.resid[(b * got.seqLen + t) * D + i] - want) ** 2;
        den += want * want;
      }
  return Math.sqrt(num / den);
}

describe('int8 engine on the dense Qwen3 goldens (qwen3-tiny-bf16)', () => {
  it('keeps the residual of every layer within int8 error of the goldens (relative RMS under 5%; measured 2.7% to 3.9%)', async () => {
    const g = new Goldens('goldens.safetensors');
    const gold = g.f32('right.resid_post'); // [4, 6, 64, 64]
    try {
      for (let L = 0; L < 4; L++) {
        const e = await ForwardEngine.open({ modelDir: goldenCheckpointDir, layer: L, cacheDir, threads: 1, precision: 'int8' });
        try {
          expect(e.info.weightDtype).toBe('int8');
          const err = relRmsVsGolden(await e.runResidual(seqs), gold, L);
          expect(err, `layer ${L}`).toBeLessThan(0.05);
          expect(err, `layer ${L} is really quantized`).toBeGreaterThan(1e-3);
        } finally {
          await e.close();
        }
      }
    } finally {
      g.close();
    }
  });

  it.each([
    ['f32', 'the dense float32 encoder (the default): on every token'],
    ['exact-candidates', 'the exact-candidate encoder: on every token its margin certifies, and it certifies most'],
  ] as const)("fires exactly the float32 encoder's features of its own residual with SAE encoder '%s', %s (Qwen-Scope SAE)", async (encoder, _what) => {
    const sae = loadSae(join(goldensDir, 'qscope-sae', 'layer2.sae.pt'), { k: 32 });
    const saved = INT8_GRAPH_CHOICES.saeEncoder;
    INT8_GRAPH_CHOICES.saeEncoder = encoder; // part of the graph cache key: each encoder gets its own graph
    const e = await ForwardEngine.open({ modelDir: goldenCheckpointDir, layer: 2, sae, cacheDir, threads: 1, precision: 'int8' });
    INT8_GRAPH_CHOICES.saeEncoder = saved;
    try {
      if (encoder === 'exact-candidates') expect(e.info.outputs).toContain('sae_exact');
      else expect(e.info.outputs).not.toContain('sae_exact');
      for (const padding of ['right', 'left'] as const) {
        const r = await e.runResidual(seqs, padding);
        const top = await e.runTopK(seqs, padding);
        const ref = encodeTopK(sae, r.resid); // float64-accumulated float32 encoder on the int8 engine's residual
        let real = 0, checked = 0;
        for (let t = 0; t < top.batch * top.seqLen; t++) {
          if (!top.mask[t]) continue;
          real++;
          if (encoder === 'exact-candidates' && !top.exact![t]) continue;
          checked++;
          const fired = (values: Float32Array, indices: Int32Array) => {
            const m = new Map<number, number>();
            for (let j = 0; j < sae.k; j++) if (values[t * sae.k + j] > 0) m.set(indices[t * sae.k + j], values[t * sae.k + j]);
            return m;
          };
          const got = fired(top.values, top.indices), want = fired(ref.values, ref.indices);
          expect(new Set(got.keys()), `${padding} token ${t}`).toEqual(new Set(want.keys()));
          for (const [f, v] of want) expect(Math.abs(got.get(f)! - v)).toBeLessThan(1e-4);
        }
        if (encoder === 'f32') expect(checked).toBe(real);
        else expect(checked / real, padding).toBeGreaterThan(0.9); // measured 148 of 155 right-padded
      }
    } finally {
      await e.close();
    }
  });

  it("gives a text the same fired features whatever it is batched with: alone, right- or left-padded, beside other texts (per-token activation scales)", async () => {
    const sae = loadSae(join(goldensDir, 'qscope-sae', 'layer2.sae.pt'), { k: 32 });
    const e = await ForwardEngine.open({ modelDir: goldenCheckpointDir, layer: 2, sae, cacheDir, threads: 1, precision: 'int8' });
    try {
      /** per text, per real token: fired feature -> value */
      const firedPerText = async (texts: number[][], padding: 'right' | 'left') => {
        const top = await e.runTopK(texts, padding);
        return texts.map((ids, b) => {
          const real: Map<number, number>[] = [];
          for (let t = 0; t < top.seqLen; t++) {
            const at = b * top.seqLen + t;
            if (!top.mask[at]) continue;
            const m = new Map<number, number>();
            for (let j = 0; j < sae.k; j++) if (top.values[at * sae.k + j] > 0) m.set(top.indices[at * sae.k + j], top.values[at * sae.k + j]);
            real.push(m);
          }
          expect(real).toHaveLength(ids.length);
          return real;
        });
      };
      const alone = await Promise.all(seqs.map(async (s) => (await firedPerText([s], 'right'))[0]));
      const reversed = [...seqs].reverse();
      const layouts = [
        { name: 'right-padded batch', texts: seqs, got: await firedPerText(seqs, 'right') },
        { name: 'left-padded batch', texts: seqs, got: await firedPerText(seqs, 'left') },
        { name: 'reversed batch', texts: reversed, got: (await firedPerText(reversed, 'right')).reverse() },
        { name: 'pairs with the longest text', texts: seqs, got: await Promise.all(seqs.map(async (s) => (await firedPerText([s, seqs[seqs.length - 1]], 'right'))[0])) },
      ];
      let tokens = 0;
      for (const { name, got } of layouts)
        seqs.forEach((s, i) => {
          for (let t = 0; t < s.length; t++) {
            tokens++;
            expect(new Set(got[i][t].keys()), `${name}: text ${i} token ${t}`).toEqual(new Set(alone[i][t].keys()));
            for (const [f, v] of alone[i][t]) expect(Math.abs(got[i][t].get(f)! - v), `${name}: text ${i} token ${t} feature ${f}`).toBeLessThan(1e-4);
          }
        });
      expect(tokens).toBe(4 * seqs.reduce((a, s) => a + s.length, 0));
    } finally {
      await e.close();
    }
  });

  it('serves weights in under 0.3x their float32 bytes, and keeps the f32 and int8 graphs apart in the cache', async () => {
    const dir = join(cacheDir, 'apart');
    const open = (precision: 'f32' | 'int8') => ForwardEngine.open({ modelDir: goldenCheckpointDir, layer: 3, cacheDir: dir, threads: 1, precision });
    const f32 = await open('f32');
    const int8 = await open('int8');
    const again = await open('int8');
    try {
      expect(f32.info.modelPath).not.toBe(int8.info.modelPath);
      expect(readdirSync(dir).filter((f) => !f.startsWith('.'))).toHaveLength(2);
      expect(again.info.built).toBe(false);
      expect(again.info.modelPath).toBe(int8.info.modelPath);
      const bytes = (m: string) => statSync(join(m, '..', WEIGHTS_FILE)).size;
      const ckpt = Checkpoint.open(goldenCheckpointDir);
      const float32Bytes = 4 * [...ckpt.arch.requiredTensors(3).values()].reduce((a, shape) => a + shape.reduce((x, y) => x * y, 1), 0);
      ckpt.close();
      expect(bytes(int8.info.modelPath) / float32Bytes).toBeLessThan(0.3);
      // our f32 graph already keeps a bf16 checkpoint's embedding table in bf16, so it is under 1x itself
      expect(bytes(int8.info.modelPath) / bytes(f32.info.modelPath)).toBeLessThan(0.6);
      // and they compute different things: the f32 graph is the exact one
      const a = await f32.runResidual(seqs), b = await int8.runResidual(seqs);
      expect(Array.from(a.resid)).not.toEqual(Array.from(b.resid));
    } finally {
      await f32.close();
      await int8.close();
      await again.close();
    }
  });
});

describe('int8 engine on the Qwen3-MoE goldens (qwen3-moe-tiny)', () => {
  it('runs the experts as com.microsoft QMoE with 8-bit weights and keeps every layer within int8 error of the goldens (relative RMS under 5%; measured 2.9% to 3.6%)', async () => {
    const g = openFamilyGoldens('qwen3-moe');
    try {
      for (let L = 0; L < 4; L++) {
        const e = await ForwardEngine.open({ modelDir: join(goldensDir, 'qwen3-moe', 'qwen3-moe-tiny'), layer: L, cacheDir, threads: 1, precision: 'int8' });
        try {
          if (L === 3) expect(readFileSync(e.info.modelPath).includes('QMoE')).toBe(true);
          const out = await e.runResidual(g.sequences);
          const gold = g.goldens.f32(`right.resid_post.${L}`).data; // [S, T, D]
          let num = 0, den = 0;
          for (let b = 0; b < out.batch; b++)
            for (let t = 0; t < g.sequences[b].length; t++)
              for (let i = 0; i < out.dModel; i++) {
                const at = (b * out.seqLen + t) * out.dModel + i, want = gold[(b * g.T + t) * out.dModel + i];
                num += (out.resid[at] - want) ** 2;
                den += want * want;
              }
          const err = Math.sqrt(num / den);
          expect(err, `layer ${L}`).toBeLessThan(0.05);
          expect(err, `layer ${L} is really quantized`).toBeGreaterThan(1e-3);
        } finally {
          await e.close();
        }
      }
    } finally {
      g.close();
    }
  });
});

describe('int8 engine on the Qwen3.5 goldens (qwen3.5-tiny: Gated DeltaNet + gated attention)', () => {
  it('keeps every layer within int8 error of the goldens (relative RMS under 10%; measured 3.1% at layer 0, 7.6% at layer 3)', async () => {
    const g = openFamilyGoldens('qwen3.5');
    try {
      for (const L of [0, 3]) {
        const e = await ForwardEngine.open({ modelDir: join(goldensDir, 'qwen3.5', 'qwen3.5-tiny'), layer: L, cacheDir, threads: 1, precision: 'int8' });
        try {
          expect(e.info.weightDtype).toBe('int8');
          const out = await e.runResidual(g.sequences);
          const gold = g.goldens.f32(`right.resid_post.${L}`).data; // [S, T, D]
          let num = 0, den = 0;
          for (let b = 0; b < out.batch; b++)
            for (let t = 0; t < g.sequences[b].length; t++)
              for (let i = 0; i < out.dModel; i++) {
                const want = gold[(b * g.T + t) * out.dModel + i];
                num += (out.resid[(b * out.seqLen + t) * out.dModel + i] - want) ** 2;
                den += want * want;
              }
          const err = Math.sqrt(num / den);
          expect(err, `layer ${L}`).toBeLessThan(0.1);
          expect(err, `layer ${L} is really quantized`).toBeGreaterThan(1e-3);
        } finally {
          await e.close();
        }
      }
    } finally {
      g.close();
    }
  });
});

describe('int8 engine on the Qwen3.5-MoE goldens (qwen3.5-moe-tiny: Gated DeltaNet + gated attention + QMoE experts)', () => {
  it('keeps every layer within int8 error of the goldens (relative RMS under 15%; measured 4.0% at layer 0, 12.2% at layer 3)', async () => {
    const g = openFamilyGoldens('qwen3.5-moe');
    try {
      for (const L of [0, 3]) {
        const e = await ForwardEngine.open({ modelDir: join(goldensDir, 'qwen3.5-moe', 'qwen3.5-moe-tiny'), layer: L, cacheDir, threads: 1, precision: 'int8' });
        try {
          expect(e.info.weightDtype).toBe('int8');
          const out = await e.runResidual(g.sequences);
          const gold = g.goldens.f32(`right.resid_post.${L}`).data; // [S, T, D]
          let num = 0, den = 0;
          for (let b = 0; b < out.batch; b++)
            for (let t = 0; t < g.sequences[b].length; t++)
              for (let i = 0; i < out.dModel; i++) {
                const want = gold[(b * g.T + t) * out.dModel + i];
                num += (out.resid[(b * out.seqLen + t) * out.dModel + i] - want) ** 2;
                den += want * want;
              }
          const err = Math.sqrt(num / den);
          expect(err, `layer ${L}`).toBeLessThan(0.15);
          expect(err, `layer ${L} is really quantized`).toBeGreaterThan(1e-3);
        } finally {
          await e.close();
        }
      }
    } finally {
      g.close();
    }
  });
});

describe('where the precision is decided', () => {
  it('auto is f16 on CUDA and the measured CPU choice on CPU; explicit settings are kept; f16 from a CUDA fallback becomes the CPU choice', () => {
    expect(resolvePrecision('auto', 'cuda')).toBe('f16');
    expect(resolvePrecision('auto', 'cpu')).toBe(CPU_AUTO_PRECISION);
    expect(resolvePrecision('int8', 'cpu')).toBe('int8');
    expect(resolvePrecision('f32', 'cuda')).toBe('f32');
    expect(resolvePrecision('f16', 'cpu')).toBe('f16');
    expect(resolvePrecision('f16', 'cpu', { fellBackFromCuda: true })).toBe(CPU_AUTO_PRECISION);
    expect(resolvePrecision('auto', 'cpu', { fellBackFromCuda: true })).toBe(CPU_AUTO_PRECISION);
  });

  it('a CUDA request that cannot load CUDA builds only the CPU graph (never a CUDA f16 graph first)', async () => {
    const dir = join(cacheDir, 'fallback');
    const warnings: string[] = [];
    const e = await ForwardEngine.open({ modelDir: goldenCheckpointDir, layer: 1, cacheDir: dir, provider: 'cuda', precision: 'auto', threads: 1, warn: (m) => warnings.push(m) });
    try {
      if (e.info.provider === 'cuda') return; // a machine with a GPU: nothing to fall back from
      expect(e.info).toMatchObject({ provider: 'cpu', requestedProvider: 'cuda', weightDtype: CPU_AUTO_PRECISION });
      expect(warnings.some((w) => /falling back to 'cpu'/.test(w))).toBe(true);
      const built = readdirSync(dir).filter((f) => !f.startsWith('.'));
      expect(built).toHaveLength(1);
      expect(built[0]).not.toContain('-f16-');
    } finally {
      await e.close();
    }
  });
});
