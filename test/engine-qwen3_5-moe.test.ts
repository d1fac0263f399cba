/**
 * Qwen3.5-MoE (qwen3_5_moe, Qwen3.5-35B-A3B's format) in the ONNX engine against Hugging Face's
 * Qwen3_5MoeTextModel (../shared/goldens/qwen3.5-moe): every layer (Gated DeltaNet layers 0-2, gated full attention
 * layer 3, a sparse MoE with a shared expert in every layer), right-padded, left-padded and one by one, from the
 * sharded checkpoint as published and a single-file copy, with both MoE kernels; the fused Qwen-Scope SAE at layer 3;
 * the TypeScript reference against the goldens' routing.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import type { MoeKernel } from '../src/model/blocks/moe.js';
import { Checkpoint } from '../src/model/checkpoint.js';
import { padBatch, referenceForward } from '../src/model/reference-forward.js';
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from '../src/model/safetensors.js';
import { loadSae } from '../src/model/sae/load.js';
import { expectResidualGoldens, expectSaeGoldens, openFamilyGoldens } from './helpers/family-goldens.js';
import { goldensDir } from './helpers/goldens.js';

const folder = join(goldensDir, 'qwen3.5-moe');
const modelDir = join(folder, 'qwen3.5-moe-tiny');
const cacheDir = mkdtempSync(join(tmpdir(), 'toxscope-qwen3_5-moe-'));
const single = singleFileCopy(modelDir);
const g = openFamilyGoldens('qwen3.5-moe');
afterAll(() => {
  g.close();
  rmSync(cacheDir, { recursive: true, force: true });
  rmSync(single, { recursive: true, force: true });
});

/** The sharded golden checkpoint rewritten as one model.safetensors (same tensors, same bytes). */
function singleFileCopy(dir: string): string {
  const out = mkdtempSync(join(tmpdir(), 'toxscope-single-'));
  copyFileSync(join(dir, 'config.json'), join(out, 'config.json'));
  const ckpt = Checkpoint.open(dir);
  const t: Record<string, TensorToWrite> = {};
  for (const name of ckpt.names()) {
    const info = ckpt.info(name);
    t[name] = { dtype: info.dtype, shape: info.shape, data: ckpt.readRaw(name) };
  }
  ckpt.close();
  writeSafetensors(join(out, 'model.safetensors'), t, { format: 'pt' });
  return out;
}

async function withEngine(o: { dir: string; layer: number; moeKernel?: MoeKernel; sae?: ReturnType<typeof loadSae> }, fn: (e: ForwardEngine) => Promise<void>): Promise<void> {
  const e = await ForwardEngine.open({ modelDir: o.dir, layer: o.layer, cacheDir, threads: 1, sae: o.sae, graphOptions: o.moeKernel ? { moeKernel: o.moeKernel } : undefined });
  try {
    await fn(e);
  } finally {
    await e.close();
  }
}

describe('qwen3_5_moe engine vs Hugging Face goldens', () => {
  for (const layer of [0, 1, 2, 3]) {
    it(`matches resid_post after layer ${layer} (sharded checkpoint, com.microsoft MoE), right-padded, left-padded and one by one`, async () => {
      await withEngine({ dir: modelDir, layer }, async (e) => {
        expect(e.info.family).toBe('qwen3_5_moe');
        await expectResidualGoldens(e, g, layer);
      });
    });
  }

  it('matches from a single-file copy of the checkpoint', async () => {
    await withEngine({ dir: single, layer: 3 }, (e) => expectResidualGoldens(e, g, 3));
  });

  it('the gathered ai.onnx decomposition of the MoE block matches too', async () => {
    await withEngine({ dir: modelDir, layer: 3, moeKernel: 'gathered' }, (e) => expectResidualGoldens(e, g, 3));
  });

  it('fused Qwen-Scope SAE at layer 3: fired sets and codes within 1e-4, firing rates exactly', async () => {
    const sae = loadSae(join(folder, 'qscope-sae', 'layer3.sae.pt'), { k: 32 });
    await withEngine({ dir: modelDir, layer: 3, sae }, (e) => expectSaeGoldens(e, g, 3, 512));
  });

  it('the TypeScript reference reproduces the residuals and every routing decision', () => {
    const ckpt = Checkpoint.open(modelDir);
    try {
      const seqs = g.sequences.slice(0, 3);
      const batch = padBatch(seqs, 'right', 1);
      const out = referenceForward(ckpt, ckpt.arch, batch);
      const T = batch.ids[0].length, D = 64, GT = g.T;
      for (let l = 0; l < 4; l++) {
        const gold = g.goldens.f32(`right.resid_post.${l}`).data;
        let worst = 0;
        seqs.forEach((s, b) => s.forEach((_, t) => {
          for (let i = 0; i < D; i++) worst = Math.max(worst, Math.abs(out.residPost[l][(b * T + t) * D + i] - gold[(b * GT + t) * D + i]));
        }));
        expect(worst, `layer ${l}`).toBeLessThan(1e-5);
        const r = out.router.get(l)!;
        const ge = g.goldens.i32(`right.router.${l}.experts`).data;
        const gw = g.goldens.f32(`right.router.${l}.weights`).data;
        seqs.forEach((s, b) => s.forEach((_, t) => {
          expect(Array.from(r.experts.subarray((b * T + t) * 2, (b * T + t + 1) * 2)), `layer ${l} text ${b} token ${t}`).toEqual(Array.from(ge.subarray((b * GT + t) * 2, (b * GT + t + 1) * 2)));
          for (let j = 0; j < 2; j++) expect(Math.abs(r.weights[(b * T + t) * 2 + j] - gw[(b * GT + t) * 2 + j])).toBeLessThan(1e-5);
        }));
      }
    } finally {
      ckpt.close();
    }
  });
});
