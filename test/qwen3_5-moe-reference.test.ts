/**
 * Qwen3.5-MoE beyond the goldens: the ONNX engine against the TypeScript reference forward pass on configurations
 * the goldens do not have (other expert counts and top-k, two DeltaNet value heads per key head, untied
 * embeddings, explicit layer_types, sharded files), with both MoE kernels; only the tensors up to the target layer
 * are read (fused experts included, never lm_head, mtp or the vision tower); each refusal names what is wrong.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import type { MoeKernel } from '../src/model/blocks/moe.js';
import { Checkpoint, type WeightSource, assertRunnableTo } from '../src/model/checkpoint.js';
import { buildModelGraph } from '../src/model/graph.js';
import { padBatch, referenceForward } from '../src/model/reference-forward.js';
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from '../src/model/safetensors.js';
import { type TinyQwen35MoeOptions, tinyQwen35MoeCheckpoint } from './helpers/tiny-qwen35-moe.js';

const tmp = mkdtempSync(join(tmpdir(), 'toxscope-qwen35-moe-ref-'));
const cleanups: (() => void)[] = [() => rmSync(tmp, { recursive: true, force: true })];
afterAll(() => cleanups.reverse().forEach((c) => c()));
function tiny(o: TinyQwen35MoeOptions) {
  const t = tinyQwen35MoeCheckpoint(o);
  cleanups.push(t.cleanup);
  return t;
}
function tokens(n: number, vocab: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % vocab);
}

async function worstVsReference(t: ReturnType<typeof tiny>, layer: number, kernel: MoeKernel): Promise<number> {
  const rows = [tokens(70, 512, 1), tokens(5, 512, 2), tokens(1, 512, 3)];
  const engine = await ForwardEngine.open({ modelDir: t.dir, layer, cacheDir: join(tmp, 'cache'), threads: 1, graphOptions: { moeKernel: kernel } });
  const ckpt = Checkpoint.open(t.dir);
  let worst = 0;
  try {
    for (const padding of ['right', 'left'] as const) {
      const got = await engine.runResidual(rows, padding);
      const batch = padBatch(rows, padding, 1);
      const want = referenceForward(ckpt, ckpt.arch, batch, layer);
      expect(want.router.size).toBe(layer + 1); // every layer routes
      const ref = want.residPost[layer], D = t.config.hiddenSize;
      for (let bt = 0; bt < got.mask.length; bt++) if (got.mask[bt]) for (let i = 0; i < D; i++) worst = Math.max(worst, Math.abs(got.resid[bt * D + i] - ref[bt * D + i]));
    }
  } finally {
    ckpt.close();
    await engine.close();
  }
  return worst;
}

describe('qwen3_5_moe engine vs the reference on configurations the goldens lack', () => {
  const cases: { label: string; opts: TinyQwen35MoeOptions; layer: number }[] = [
    { label: '10 experts top-3, two value heads per key head, untied, 5 layers with layer_types, 3 shards', opts: { numExperts: 10, topK: 3, keyHeads: 2, valueHeads: 4, tieWordEmbeddings: false, numLayers: 5, layerTypes: ['linear_attention', 'full_attention', 'linear_attention', 'linear_attention', 'full_attention'], shards: 3, seed: 61 }, layer: 4 },
    { label: '3 experts top-1, shared expert wider than the hidden size', opts: { numExperts: 3, topK: 1, sharedExpertWidth: 80, seed: 62 }, layer: 3 },
  ];
  for (const c of cases)
    for (const kernel of ['ort-moe', 'gathered'] as const)
      it(`${c.label} [${kernel}]: right- and left-padded within 1e-4`, async () => {
        expect(await worstVsReference(tiny(c.opts), c.layer, kernel)).toBeLessThan(1e-4);
      });
});

describe('qwen3_5_moe reads only what the target layer needs', () => {
  it('no tensor of a later layer (fused experts included), never lm_head, mtp, the vision tower or the final norm', () => {
    const t = tiny({ numLayers: 4, tieWordEmbeddings: false, seed: 63 });
    const ckpt = Checkpoint.open(t.dir);
    const read: string[] = [];
    const spy: WeightSource = {
      has: (n) => ckpt.has(n), info: (n) => ckpt.info(n), close: () => ckpt.close(),
      readF32: (n) => (read.push(n), ckpt.readF32(n)),
      readRaw: (n) => (read.push(n), ckpt.readRaw(n)),
    };
    const out = mkdtempSync(join(tmp, 'reads-'));
    try {
      buildModelGraph({ arch: ckpt.arch, layer: 1, weights: spy }, out);
      expect(read.filter((n) => /layers\.[23]\.|lm_head|^mtp\.|visual|language_model\.norm/.test(n))).toEqual([]);
      expect(read).toContain('model.language_model.layers.1.mlp.experts.gate_up_proj');
      expect(new Set(read)).toEqual(new Set(ckpt.arch.requiredTensors(1).keys()));
    } finally {
      ckpt.close();
    }
  });
});

describe('qwen3_5_moe refusals, each with its own message', () => {
  const rewrite = (dir: string, edit: (t: Record<string, TensorToWrite>) => void) => {
    const path = join(dir, 'model.safetensors');
    const st = SafetensorsFile.open(path);
    const ts: Record<string, TensorToWrite> = {};
    for (const [n, i] of st.tensors) ts[n] = { dtype: i.dtype, shape: i.shape, data: st.readBytes(n) };
    st.close();
    edit(ts);
    writeSafetensors(path, ts);
  };
  const editConfig = (dir: string, edit: (c: Record<string, any>) => void) => {
    const path = join(dir, 'config.json');
    const c = JSON.parse(readFileSync(path, 'utf8'));
    edit(c);
    writeFileSync(path, JSON.stringify(c));
  };

  it('a missing fused expert tensor is named', () => {
    const t = tiny({ numLayers: 2, seed: 64 });
    rewrite(t.dir, (ts) => delete ts['model.language_model.layers.1.mlp.experts.down_proj']);
    const ckpt = Checkpoint.open(t.dir);
    try {
      assertRunnableTo(ckpt, ckpt.arch, 0);
      expect(() => assertRunnableTo(ckpt, ckpt.arch, 1)).toThrow(`${t.dir}: checkpoint is missing 1 tensor(s) needed up to layer 1: model.language_model.layers.1.mlp.experts.down_proj`);
    } finally {
      ckpt.close();
    }
  });

  it('misshapen fused experts (experts stored one by one, or [E, D, 2I]) are named with both shapes', () => {
    const t = tiny({ numLayers: 1, numExperts: 6, expertWidth: 24, hiddenSize: 32, seed: 65 });
    rewrite(t.dir, (ts) => {
      const n = 'model.language_model.layers.0.mlp.experts.gate_up_proj';
      ts[n] = { ...ts[n], shape: [6, 32, 48] };
    });
    const ckpt = Checkpoint.open(t.dir);
    try {
      expect(() => assertRunnableTo(ckpt, ckpt.arch, 0)).toThrow(`${join(t.dir, 'model.safetensors')}: tensor 'model.language_model.layers.0.mlp.experts.gate_up_proj' has shape [6,32,48] but config.json implies [6,48,32]`);
    } finally {
      ckpt.close();
    }
  });

  it('a layer past the depth, text_config missing, top-k above the expert count, a missing expert key', async () => {
    const t = tiny({ numLayers: 2, seed: 66 });
    await expect(ForwardEngine.open({ modelDir: t.dir, layer: 2, cacheDir: join(tmp, 'cache') })).rejects.toThrow(`${t.dir}: layer 2 is out of range: the model has 2 decoder layers (0..1)`);
    const path = join(t.dir, 'config.json');
    const original = readFileSync(path, 'utf8');
    editConfig(t.dir, (c) => (c.text_config.num_experts_per_tok = 7));
    expect(() => Checkpoint.open(t.dir)).toThrow(`${path}: text_config.num_experts_per_tok 7 exceeds num_experts 6`);
    writeFileSync(path, original);
    editConfig(t.dir, (c) => delete c.text_config.shared_expert_intermediate_size);
    expect(() => Checkpoint.open(t.dir)).toThrow(new RegExp(`^${path}: text_config is not a Qwen3.5-MoE text config \\(shared_expert_intermediate_size: `));
    writeFileSync(path, original);
    editConfig(t.dir, (c) => delete c.text_config);
    expect(() => Checkpoint.open(t.dir)).toThrow(`${path}: a qwen3_5_moe config must nest the language model's settings in "text_config"`);
  });
});
