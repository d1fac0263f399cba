/**
 * Qwen3-MoE (qwen3_moe, Qwen3-30B-A3B's format) in the ONNX engine against Hugging Face's Qwen3MoeModel
 * (../shared/goldens/qwen3-moe): every layer (MoE layers 0, 2, 3 and the dense layer 1), right-padded,
 * left-padded and one by one, from the single-file checkpoint and a sharded copy, with both MoE kernels;
 * the fused Qwen-Scope SAE at layer 2.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import type { MoeKernel } from '../src/model/blocks/moe.js';
import { loadSae } from '../src/model/sae/load.js';
import { expectResidualGoldens, expectSaeGoldens, openFamilyGoldens, shardedCopy } from './helpers/family-goldens.js';
import { goldensDir } from './helpers/goldens.js';

const folder = join(goldensDir, 'qwen3-moe');
const modelDir = join(folder, 'qwen3-moe-tiny');
const cacheDir = mkdtempSync(join(tmpdir(), 'toxscope-qwen3-moe-'));
const sharded = shardedCopy(modelDir, 3);
const g = openFamilyGoldens('qwen3-moe');
afterAll(() => {
  g.close();
  rmSync(cacheDir, { recursive: true, force: true });
  rmSync(sharded, { recursive: true, force: true });
});

async function withEngine(o: { dir: string; layer: number; moeKernel?: MoeKernel; sae?: ReturnType<typeof loadSae> }, fn: (e: ForwardEngine) => Promise<void>): Promise<void> {
  const e = await ForwardEngine.open({ modelDir: o.dir, layer: o.layer, cacheDir, threads: 1, sae: o.sae, graphOptions: o.moeKernel ? { moeKernel: o.moeKernel } : undefined });
  try {
    await fn(e);
  } finally {
    await e.close();
  }
}

describe('qwen3_moe engine vs Hugging Face goldens', () => {
  for (const layer of [0, 1, 2, 3]) {
    it(`matches resid_post after layer ${layer} (com.microsoft MoE kernel), right-padded, left-padded and one by one`, async () => {
      await withEngine({ dir: modelDir, layer }, async (e) => {
        expect(e.info.family).toBe('qwen3_moe');
        await expectResidualGoldens(e, g, layer);
      });
    });
  }

  it('matches every golden from a sharded checkpoint (a layer\'s experts split across files)', async () => {
    await withEngine({ dir: sharded, layer: 3 }, (e) => expectResidualGoldens(e, g, 3));
  });

  it('the gathered ai.onnx decomposition of the MoE block matches too', async () => {
    await withEngine({ dir: modelDir, layer: 3, moeKernel: 'gathered' }, (e) => expectResidualGoldens(e, g, 3));
  });

  it('fused Qwen-Scope SAE at layer 2: fired sets and codes within 1e-4, firing rates exactly', async () => {
    const sae = loadSae(join(folder, 'qscope-sae', 'layer2.sae.pt'), { k: 32 });
    await withEngine({ dir: modelDir, layer: 2, sae }, (e) => expectSaeGoldens(e, g, 2, 512));
  });
});
