/**
 * tinyMoeCheckpoint(): a random Qwen3-MoE checkpoint directory in the exact Hugging Face layout (config.json +
 * model.safetensors, or shards + index), experts stored one by one as Qwen3-30B-A3B's files do, seeded, with
 * weight scales like the goldens' (router std 2 / sqrt(D) so routing decisions are clear).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { f32ToBf16 } from '../../src/model/dtypes.js';
import { type Qwen3MoeConfig, isMoeLayer, toQwen3MoeHfConfigJson } from '../../src/model/families/qwen3-moe.js';
import { type TensorToWrite, writeSafetensors } from '../../src/model/safetensors.js';

export type TinyMoeOptions = Partial<Omit<Qwen3MoeConfig, 'torchDtype'>> & { dtype?: 'BF16' | 'F32'; seed?: number };

export interface TinyMoeCheckpoint {
  dir: string;
  config: Qwen3MoeConfig;
  cleanup(): void;
}

function normalSampler(seed: number): () => number {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

export function tinyMoeCheckpoint(o: TinyMoeOptions = {}): TinyMoeCheckpoint {
  const dtype = o.dtype ?? 'BF16';
  const c: Qwen3MoeConfig = {
    hiddenSize: 32, numLayers: 3, numHeads: 4, numKvHeads: 2, headDim: 8, rmsNormEps: 1e-6, ropeTheta: 1e6, vocabSize: 300,
    tieWordEmbeddings: true, numExperts: 6, topK: 2, expertWidth: 24, normTopK: true, decoderSparseStep: 1, mlpOnlyLayers: [],
    intermediateSize: 48, ...o, torchDtype: dtype === 'BF16' ? 'bfloat16' : 'float32',
  };
  const randn = normalSampler(o.seed ?? 5);
  const tensor = (shape: number[], fill: () => number): TensorToWrite => {
    const v = new Float32Array(shape.reduce((a, b) => a * b, 1)).map(fill);
    return dtype === 'BF16' ? { dtype, shape, data: f32ToBf16(v) } : { dtype, shape, data: v };
  };
  const weight = (shape: number[], std: number) => tensor(shape, () => std * randn());
  const norm = (n: number) => tensor([n], () => 1 + 0.1 * randn());
  const { hiddenSize: D, numHeads: H, numKvHeads: KV, headDim: hd, numExperts: E, expertWidth: I } = c;
  const t: Record<string, TensorToWrite> = { 'model.embed_tokens.weight': weight([c.vocabSize, D], 0.02) };
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    Object.assign(t, {
      [p + 'input_layernorm.weight']: norm(D),
      [p + 'self_attn.q_proj.weight']: weight([H * hd, D], 0.125),
      [p + 'self_attn.k_proj.weight']: weight([KV * hd, D], 0.02),
      [p + 'self_attn.v_proj.weight']: weight([KV * hd, D], 0.125),
      [p + 'self_attn.o_proj.weight']: weight([D, H * hd], 0.03),
      [p + 'self_attn.q_norm.weight']: norm(hd),
      [p + 'self_attn.k_norm.weight']: norm(hd),
      [p + 'post_attention_layernorm.weight']: norm(D),
    });
    if (isMoeLayer(c, l)) {
      t[p + 'mlp.gate.weight'] = weight([E, D], 2 / Math.sqrt(D));
      for (let e = 0; e < E; e++) {
        t[`${p}mlp.experts.${e}.gate_proj.weight`] = weight([I, D], 0.125);
        t[`${p}mlp.experts.${e}.up_proj.weight`] = weight([I, D], 0.125);
        t[`${p}mlp.experts.${e}.down_proj.weight`] = weight([D, I], 0.02);
      }
    } else {
      t[p + 'mlp.gate_proj.weight'] = weight([c.intermediateSize!, D], 0.125);
      t[p + 'mlp.up_proj.weight'] = weight([c.intermediateSize!, D], 0.125);
      t[p + 'mlp.down_proj.weight'] = weight([D, c.intermediateSize!], 0.02);
    }
  }
  t['model.norm.weight'] = norm(D);
  if (!c.tieWordEmbeddings) t['lm_head.weight'] = weight([c.vocabSize, D], 0.02);
  const dir = mkdtempSync(join(tmpdir(), 'toxscope-tiny-moe-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(toQwen3MoeHfConfigJson(c), null, 2));
  writeSafetensors(join(dir, 'model.safetensors'), t, { format: 'pt' });
  return { dir, config: c, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
