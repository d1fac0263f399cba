/**
 * Model families for `bench engine --family`: real shapes, a random bf16 checkpoint of layers 0..L in the family's
 * exact on-disk layout (one shard per layer plus the embedding, with model.safetensors.index.json, so only one
 * layer is ever in memory while writing), and the FLOPs a token really costs (for MoE: only the k experts it
 * routes to, plus the router).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { f32ToBf16 } from '../src/model/dtypes.js';
import { type Qwen3MoeConfig, isMoeLayer, toQwen3MoeHfConfigJson } from '../src/model/families/qwen3-moe.js';
import { type Qwen3Config, toHfConfigJson } from '../src/model/families/qwen3.js';
import { type TensorToWrite, writeSafetensors } from '../src/model/safetensors.js';
import { embedName, layerPrefix } from '../src/model/families/qwen3_5.js';
import { type Qwen35MoeConfig, qwen35MoeArch, toQwen35MoeHfConfigJson } from '../src/model/families/qwen3_5_moe.js';
import { qwen35FlopsPerToken } from './qwen35-shape.js';

export type BenchFamilyName = 'qwen3' | 'qwen3-moe' | 'qwen3.5' | 'qwen3.5-moe';

export interface BenchModel {
  /** config.json contents */
  hfConfig: Record<string, unknown>;
  hiddenSize: number;
  /** tensors of layer l (HF names and shapes; random values are drawn at write time), and the embedding */
  layerTensors(l: number): Record<string, number[]>;
  vocabSize: number;
  /** matmul FLOPs (2 per multiply-add) per token through layers 0..L, plus causal attention (mean (T+1)/2 keys); MoE: routed work only */
  flopsPerToken(layer: number, seq: number): number;
  describe: Record<string, unknown>;
  /** the embedding's tensor name (default 'model.embed_tokens.weight') */
  embeddingName?: string;
  /** a tensor's random values, when the default (uniform std 0.02, 1-D tensors 1) does not fit the family */
  initTensor?(name: string, shape: number[], uniform: () => number): TensorToWrite | undefined;
}

/** Attention and norms of a Qwen3-style layer. */
function qwen3AttentionTensors(p: string, D: number, H: number, KV: number, hd: number): Record<string, number[]> {
  return {
    [p + 'input_layernorm.weight']: [D],
    [p + 'self_attn.q_proj.weight']: [H * hd, D],
    [p + 'self_attn.k_proj.weight']: [KV * hd, D],
    [p + 'self_attn.v_proj.weight']: [KV * hd, D],
    [p + 'self_attn.o_proj.weight']: [D, H * hd],
    [p + 'self_attn.q_norm.weight']: [hd],
    [p + 'self_attn.k_norm.weight']: [hd],
    [p + 'post_attention_layernorm.weight']: [D],
  };
}

const attentionFlops = (D: number, H: number, KV: number, hd: number, seq: number) =>
  2 * (D * (H + 2 * KV) * hd + H * hd * D) + 2 * 2 * H * hd * ((seq + 1) / 2); // projections, then QK^T and AV

export function denseQwen3(c: Qwen3Config): BenchModel {
  const { hiddenSize: D, intermediateSize: F, numHeads: H, numKvHeads: KV, headDim: hd } = c;
  return {
    hfConfig: toHfConfigJson(c),
    hiddenSize: D,
    vocabSize: c.vocabSize,
    layerTensors: (l) => {
      const p = `model.layers.${l}.`;
      return { ...qwen3AttentionTensors(p, D, H, KV, hd), [p + 'mlp.gate_proj.weight']: [F, D], [p + 'mlp.up_proj.weight']: [F, D], [p + 'mlp.down_proj.weight']: [D, F] };
    },
    flopsPerToken: (layer, seq) => (layer + 1) * (attentionFlops(D, H, KV, hd, seq) + 2 * 3 * D * F),
    describe: { family: 'qwen3', hidden: D, intermediate: F, heads: H, kv_heads: KV, head_dim: hd, vocab: c.vocabSize },
  };
}

export function qwen3Moe(c: Qwen3MoeConfig): BenchModel {
  const { hiddenSize: D, numHeads: H, numKvHeads: KV, headDim: hd, numExperts: E, topK: k, expertWidth: I } = c;
  return {
    hfConfig: toQwen3MoeHfConfigJson(c),
    hiddenSize: D,
    vocabSize: c.vocabSize,
    layerTensors: (l) => {
      const p = `model.layers.${l}.`;
      const t = qwen3AttentionTensors(p, D, H, KV, hd);
      if (!isMoeLayer(c, l)) return { ...t, [p + 'mlp.gate_proj.weight']: [c.intermediateSize!, D], [p + 'mlp.up_proj.weight']: [c.intermediateSize!, D], [p + 'mlp.down_proj.weight']: [D, c.intermediateSize!] };
      t[p + 'mlp.gate.weight'] = [E, D];
      for (let e = 0; e < E; e++) {
        t[`${p}mlp.experts.${e}.gate_proj.weight`] = [I, D];
        t[`${p}mlp.experts.${e}.up_proj.weight`] = [I, D];
        t[`${p}mlp.experts.${e}.down_proj.weight`] = [D, I];
      }
      return t;
    },
    flopsPerToken: (layer, seq) => {
      let f = 0;
      for (let l = 0; l <= layer; l++) f += attentionFlops(D, H, KV, hd, seq) + (isMoeLayer(c, l) ? 2 * D * E + k * 2 * 3 * D * I : 2 * 3 * D * c.intermediateSize!);
      return f;
    },
    describe: { family: 'qwen3_moe', hidden: D, heads: H, kv_heads: KV, head_dim: hd, experts: E, top_k: k, expert_width: I, vocab: c.vocabSize },
  };
}

/** Qwen3-30B-A3B's published text shapes (config.json of Qwen/Qwen3-30B-A3B-Base). */
export function qwen3_30bA3bConfig(numLayers: number): Qwen3MoeConfig {
  return {
    hiddenSize: 2048, numLayers, numHeads: 32, numKvHeads: 4, headDim: 128, rmsNormEps: 1e-6, ropeTheta: 1e6, vocabSize: 151936,
    tieWordEmbeddings: false, numExperts: 128, topK: 8, expertWidth: 768, normTopK: true, decoderSparseStep: 1, mlpOnlyLayers: [],
    intermediateSize: 6144, torchDtype: 'bfloat16',
  };
}

/** A --keep directory from an earlier run with the same config and layers (its weights are reused). */
export function sameCheckpoint(dir: string, m: BenchModel, lastLayer: number): boolean {
  try {
    const meta = JSON.parse(readFileSync(join(dir, 'bench.json'), 'utf8'));
    return meta.last_layer === lastLayer && readFileSync(join(dir, 'config.json'), 'utf8') === JSON.stringify(m.hfConfig, null, 2);
  } catch {
    return false;
  }
}

/**
 * HF-layout bf16 checkpoint, layers 0..lastLayer only, uniform random weights of std 0.02 (norm weights 1),
 * sharded: model-00000 holds the embedding, model-0000(l+1) layer l.
 */
export function writeRandomCheckpoint(dir: string, m: BenchModel, lastLayer: number, seed: number): void {
  mkdirSync(dir, { recursive: true });
  let s = seed >>> 0;
  const a = 0.02 * Math.sqrt(3);
  const uniform = () => {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5; //   xorshift32
    return (s >>> 0) / 4294967296;
  };
  const fill = (shape: number[], name: string): TensorToWrite => {
    const special = m.initTensor?.(name, shape, uniform);
    if (special) return special;
    const n = shape.reduce((x, y) => x * y, 1);
    if (shape.length === 1) return { dtype: 'BF16', shape, data: f32ToBf16(new Float32Array(n).fill(1)) };
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = (uniform() - 0.5) * 2 * a;
    return { dtype: 'BF16', shape, data: f32ToBf16(v) };
  };
  const shards = lastLayer + 2;
  const file = (i: number) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
  const weightMap: Record<string, string> = {};
  const write = (i: number, shapes: Record<string, number[]>) => {
    const t: Record<string, TensorToWrite> = {};
    for (const [name, shape] of Object.entries(shapes)) {
      t[name] = fill(shape, name);
      weightMap[name] = file(i);
    }
    writeSafetensors(join(dir, file(i)), t, { format: 'pt' });
  };
  write(0, { [m.embeddingName ?? 'model.embed_tokens.weight']: [m.vocabSize, m.hiddenSize] });
  for (let l = 0; l <= lastLayer; l++) write(l + 1, m.layerTensors(l));
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(m.hfConfig, null, 2));
  writeFileSync(join(dir, 'bench.json'), JSON.stringify({ last_layer: lastLayer }));
  if (!existsSync(join(dir, 'config.json'))) throw new Error(`${dir}: checkpoint not written`);
}

/** Qwen3.5-35B-A3B's published text shapes (text_config), deep enough for `layer`. */
export function qwen35_35bA3bConfig(layer: number, vocabSize = 248320): Qwen35MoeConfig {
  const numLayers = Math.max(40, layer + 1);
  return {
    modelType: 'qwen3_5_moe', hiddenSize: 2048, numLayers, vocabSize, rmsNormEps: 1e-6, tieWordEmbeddings: false,
    layerTypes: Array.from({ length: numLayers }, (_, l) => ((l + 1) % 4 === 0 ? 'full_attention' : 'linear_attention')),
    attention: { numHeads: 16, numKvHeads: 2, headDim: 256, ropeTheta: 1e7, rotaryDim: 64 },
    deltaNet: { numKeyHeads: 16, numValueHeads: 32, keyHeadDim: 128, valueHeadDim: 128, convKernel: 4 },
    numExperts: 256, topK: 8, expertWidth: 512, sharedExpertWidth: 512, torchDtype: 'bfloat16',
  };
}

/**
 * Qwen3.5-MoE: the hybrid mixer's FLOPs (bench/qwen35-shape.ts, its MLP term at width 0) plus, per layer, the router,
 * the k routed experts and the shared expert with its gate.
 */
export function qwen35Moe(c: Qwen35MoeConfig): BenchModel {
  const D = c.hiddenSize, E = c.numExperts, k = c.topK, I = c.expertWidth, S = c.sharedExpertWidth;
  const arch = qwen35MoeArch(c);
  return {
    hfConfig: toQwen35MoeHfConfigJson(c),
    hiddenSize: D,
    vocabSize: c.vocabSize,
    embeddingName: embedName(),
    layerTensors: (l) => Object.fromEntries([...arch.requiredTensors(l)].filter(([n]) => n.startsWith(layerPrefix(l)))),
    flopsPerToken: (layer, seq) =>
      qwen35FlopsPerToken({ ...c, modelType: 'qwen3_5', intermediateSize: 0 }, layer, seq) + (layer + 1) * (2 * D * E + k * 2 * 3 * D * I + 2 * 3 * D * S + 2 * D),
    describe: { family: 'qwen3_5_moe', hidden: D, experts: E, top_k: k, expert_width: I, shared_expert_width: S, deltanet_key_value_heads: [c.deltaNet.numKeyHeads, c.deltaNet.numValueHeads], attention_heads: [c.attention.numHeads, c.attention.numKvHeads], vocab: c.vocabSize },
    // as trained models have them: A_log and the gated norm float32, decays between about 0.6 and 1, norms scale 1
    initTensor(name, shape, uniform) {
      const n = shape.reduce((x, y) => x * y, 1);
      if (name.endsWith('A_log')) return { dtype: 'F32', shape, data: Float32Array.from({ length: n }, () => Math.log(0.02 + 0.3 * uniform())) };
      if (name.endsWith('linear_attn.norm.weight')) return { dtype: 'F32', shape, data: new Float32Array(n).fill(1) };
      if (name.endsWith('dt_bias')) return { dtype: 'BF16', shape, data: f32ToBf16(Float32Array.from({ length: n }, () => Math.log(Math.expm1(0.3 + 0.6 * uniform())))) };
      if (shape.length === 1) return { dtype: 'BF16', shape, data: f32ToBf16(new Float32Array(n)) }; // zero-centred norms: 1 + 0
      return undefined;
    },
  };
}
