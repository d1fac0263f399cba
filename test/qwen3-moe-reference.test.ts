/**
 * Qwen3-MoE beyond the goldens: the TypeScript reference forward pass (src/model/reference-forward.ts)
 * reproduces Hugging Face's goldens (residuals and every routing decision), then checks the ONNX engine on
 * configurations the goldens lack (other expert counts and top-k, no renormalisation, decoder_sparse_step 2
 * with dense layers between, untied embeddings, f32); only tensors up to the target layer are read; each
 * refusal names what is wrong.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { Checkpoint, type WeightSource, assertRunnableTo } from '../src/model/checkpoint.js';
import type { MoeKernel } from '../src/model/blocks/moe.js';
import { isMoeLayer } from '../src/model/families/qwen3-moe.js';
import { buildModelGraph } from '../src/model/graph.js';
import { type Padding, padBatch, referenceForward } from '../src/model/reference-forward.js';
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from '../src/model/safetensors.js';
import { openFamilyGoldens } from './helpers/family-goldens.js';
import { goldensDir } from './helpers/goldens.js';
import { type TinyMoeOptions, tinyMoeCheckpoint } from './helpers/tiny-moe-checkpoint.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'toxscope-moe-ref-'));
const cleanups: (() => void)[] = [() => rmSync(cacheDir, { recursive: true, force: true })];
afterAll(() => cleanups.reverse().forEach((c) => c()));
function tiny(o: TinyMoeOptions) {
  const t = tinyMoeCheckpoint(o);
  cleanups.push(t.cleanup);
  return t;
}

function tokens(n: number, vocab: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % vocab);
}

describe('the TypeScript reference forward pass on qwen3_moe', () => {
  it('reproduces the Hugging Face goldens: every layer\'s residual and every routing decision on real tokens', () => {
    const g = openFamilyGoldens('qwen3-moe');
    const ckpt = Checkpoint.open(join(goldensDir, 'qwen3-moe', 'qwen3-moe-tiny'));
    try {
      const seqs = g.sequences.slice(0, 3); // lengths 1, 5, 23: the reference is slow
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
      }
      expect([...out.router.keys()]).toEqual([0, 2, 3]);
      for (const [l, r] of out.router) {
        const ge = g.goldens.i32(`right.router.${l}.experts`).data; // [S, GT, 2]
        const gw = g.goldens.f32(`right.router.${l}.weights`).data;
        seqs.forEach((s, b) => s.forEach((_, t) => {
          const ours = Array.from(r.experts.subarray((b * T + t) * 2, (b * T + t + 1) * 2));
          const want = Array.from(ge.subarray((b * GT + t) * 2, (b * GT + t + 1) * 2));
          expect(ours, `layer ${l} text ${b} token ${t}`).toEqual(want);
          for (let j = 0; j < 2; j++) expect(Math.abs(r.weights[(b * T + t) * 2 + j] - gw[(b * GT + t) * 2 + j])).toBeLessThan(1e-5);
        }));
      }
    } finally {
      ckpt.close();
      g.close();
    }
  });
});

/** Largest |engine - reference| over the real tokens of layer `layer`'s residual. */
async function engineVsReference(t: ReturnType<typeof tiny>, layer: number, rows: number[][], padding: Padding, moeKernel: MoeKernel): Promise<number> {
  const engine = await ForwardEngine.open({ modelDir: t.dir, layer, cacheDir, threads: 1, graphOptions: { moeKernel } });
  const ckpt = Checkpoint.open(t.dir);
  try {
    const got = await engine.runResidual(rows, padding);
    const batch = padBatch(rows, padding, 0);
    const want = referenceForward(ckpt, ckpt.arch, batch, layer);
    expect(want.router.size, 'some layer routes').toBeGreaterThan(0);
    const ref = want.residPost[layer];
    const D = t.config.hiddenSize, T = want.seqLen;
    let worst = 0;
    let scale = 0;
    for (let b = 0; b < rows.length; b++)
      for (let i = 0; i < T; i++) {
        if (!batch.mask[b][i]) continue;
        for (let d = 0; d < D; d++) {
          const at = (b * T + i) * D + d;
          worst = Math.max(worst, Math.abs(got.resid[at] - ref[at]));
          scale = Math.max(scale, Math.abs(ref[at]));
        }
      }
    expect(scale).toBeGreaterThan(0.05);
    return worst;
  } finally {
    ckpt.close();
    await engine.close();
  }
}

describe('qwen3_moe engine vs the reference on configurations the goldens lack', () => {
  const cases: { label: string; opts: TinyMoeOptions; layer: number }[] = [
    { label: '16 experts top-4, no renormalisation (norm_topk_prob false), f32, untied embeddings', opts: { numExperts: 16, topK: 4, normTopK: false, dtype: 'F32', tieWordEmbeddings: false, seed: 11 }, layer: 2 },
    { label: 'decoder_sparse_step 2 (layers 1 and 3 sparse, 0 and 2 dense), 5 experts top-1', opts: { numLayers: 4, decoderSparseStep: 2, numExperts: 5, topK: 1, seed: 12 }, layer: 3 },
    { label: 'mlp_only_layers [0] with 3 experts top-3 (every expert), multi-query attention', opts: { mlpOnlyLayers: [0], numExperts: 3, topK: 3, numHeads: 4, numKvHeads: 1, seed: 13 }, layer: 2 },
  ];
  for (const c of cases)
    for (const kernel of ['ort-moe', 'gathered'] as const)
      it(`${c.label} [${kernel}]`, async () => {
        const t = tiny(c.opts);
        const rows = [tokens(17, 300, 1), tokens(5, 300, 2), tokens(1, 300, 3)];
        for (const padding of ['right', 'left'] as const) expect(await engineVsReference(t, c.layer, rows, padding, kernel), padding).toBeLessThan(1e-4);
      });

  it('sparse on exactly the layers Hugging Face makes sparse', () => {
    const c = tiny({ numLayers: 6, decoderSparseStep: 2, mlpOnlyLayers: [3] }).config;
    expect([0, 1, 2, 3, 4, 5].filter((l) => isMoeLayer(c, l))).toEqual([1, 5]);
  });
});

describe('qwen3_moe reads only what the target layer needs', () => {
  it('reads no tensor of a later layer (experts included) and never lm_head', () => {
    const t = tiny({ numLayers: 3, tieWordEmbeddings: false });
    const ckpt = Checkpoint.open(t.dir);
    const read: string[] = [];
    const spy: WeightSource = {
      has: (n) => ckpt.has(n),
      info: (n) => ckpt.info(n),
      readF32: (n) => (read.push(n), ckpt.readF32(n)),
      readRaw: (n) => (read.push(n), ckpt.readRaw(n)),
      close: () => ckpt.close(),
    };
    const out = mkdtempSync(join(tmpdir(), 'toxscope-moe-reads-'));
    cleanups.push(() => rmSync(out, { recursive: true, force: true }));
    try {
      buildModelGraph({ arch: ckpt.arch, layer: 1, weights: spy }, out);
      expect(read.filter((n) => n.startsWith('model.layers.2.') || n === 'lm_head.weight' || n === 'model.norm.weight')).toEqual([]);
      expect(read).toContain('model.layers.1.mlp.experts.5.down_proj.weight');
      expect(new Set(read)).toEqual(new Set(ckpt.arch.requiredTensors(1).keys()));
    } finally {
      ckpt.close();
    }
  });
});

describe('qwen3_moe refusals, each with its own message', () => {
  const editConfig = (dir: string, edit: (c: Record<string, unknown>) => void) => {
    const path = join(dir, 'config.json');
    const c = JSON.parse(readFileSync(path, 'utf8'));
    edit(c);
    writeFileSync(path, JSON.stringify(c));
  };
  const rewrite = (dir: string, edit: (t: Record<string, TensorToWrite>) => void) => {
    const path = join(dir, 'model.safetensors');
    const st = SafetensorsFile.open(path);
    const ts: Record<string, TensorToWrite> = {};
    for (const [n, i] of st.tensors) ts[n] = { dtype: i.dtype, shape: i.shape, data: st.readBytes(n) };
    st.close();
    edit(ts);
    writeSafetensors(path, ts);
  };

  it('a missing expert tensor is named; layers before it still open', async () => {
    const t = tiny({ numLayers: 2 });
    rewrite(t.dir, (ts) => delete ts['model.layers.1.mlp.experts.3.up_proj.weight']);
    const ckpt = Checkpoint.open(t.dir);
    try {
      assertRunnableTo(ckpt, ckpt.arch, 0);
      expect(() => assertRunnableTo(ckpt, ckpt.arch, 1)).toThrow(`${t.dir}: checkpoint is missing 1 tensor(s) needed up to layer 1: model.layers.1.mlp.experts.3.up_proj.weight`);
    } finally {
      ckpt.close();
    }
    await expect(ForwardEngine.open({ modelDir: t.dir, layer: 1, cacheDir })).rejects.toThrow(/model\.layers\.1\.mlp\.experts\.3\.up_proj\.weight/);
  });

  it('a misshapen router or expert is named with both shapes', () => {
    const t = tiny({ numLayers: 1, numExperts: 6, expertWidth: 24, hiddenSize: 32 });
    rewrite(t.dir, (ts) => (ts['model.layers.0.mlp.gate.weight'] = { ...ts['model.layers.0.mlp.gate.weight'], shape: [32, 6] }));
    const ckpt = Checkpoint.open(t.dir);
    try {
      expect(() => assertRunnableTo(ckpt, ckpt.arch, 0)).toThrow(`${join(t.dir, 'model.safetensors')}: tensor 'model.layers.0.mlp.gate.weight' has shape [32,6] but config.json implies [6,32]`);
    } finally {
      ckpt.close();
    }
  });

  it('a layer past the depth', async () => {
    const t = tiny({ numLayers: 2 });
    await expect(ForwardEngine.open({ modelDir: t.dir, layer: 2, cacheDir })).rejects.toThrow(`${t.dir}: layer 2 is out of range: the model has 2 decoder layers (0..1)`);
  });

  it('config.json: top-k above the expert count, a dense layer without intermediate_size, a missing expert key', () => {
    const t = tiny({});
    const path = join(t.dir, 'config.json');
    editConfig(t.dir, (c) => (c.num_experts_per_tok = 9));
    expect(() => Checkpoint.open(t.dir)).toThrow(`${path}: num_experts_per_tok 9 exceeds num_experts 6`);
    editConfig(t.dir, (c) => Object.assign(c, { num_experts_per_tok: 2, mlp_only_layers: [1], intermediate_size: undefined }));
    expect(() => Checkpoint.open(t.dir)).toThrow(`${path}: layers 1 have a dense MLP (mlp_only_layers / decoder_sparse_step) but intermediate_size is missing`);
    editConfig(t.dir, (c) => Object.assign(c, { mlp_only_layers: [], moe_intermediate_size: undefined }));
    expect(() => Checkpoint.open(t.dir)).toThrow(new RegExp(`^${path}: not a Qwen3-MoE config \\(moe_intermediate_size: `));
  });
});
