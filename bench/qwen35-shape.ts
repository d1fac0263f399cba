/**
 * Qwen3.5 for `bench engine --family qwen3.5`: the Qwen3.5-2B text shape (hidden 2048, 24 layers, DeltaNet 16 key
 * and 16 value heads of 128 with a 4-tap conv, gated attention 8/2 heads of 256 every 4th layer, partial rotary 64,
 * SwiGLU 6144, vocabulary 248,320), random bf16 weights in the real checkpoint layout (nested config, text weights
 * under model.language_model., layers 0..L only), and the FLOPs a token costs through it.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { f32ToBf16 } from '../src/model/dtypes.js';
import { type Qwen35Config, embedName, qwen35RequiredTensors, toQwen35HfConfigJson } from '../src/model/families/qwen3_5.js';
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from '../src/model/safetensors.js';

/** Qwen3.5-2B's text_config (published), deep enough for `layer`. */
export function qwen35_2B(layer: number, vocabSize = 248320): Qwen35Config {
  const numLayers = Math.max(24, layer + 1);
  return {
    modelType: 'qwen3_5',
    hiddenSize: 2048,
    intermediateSize: 6144,
    numLayers,
    vocabSize,
    rmsNormEps: 1e-6,
    tieWordEmbeddings: true,
    layerTypes: Array.from({ length: numLayers }, (_, l) => ((l + 1) % 4 === 0 ? 'full_attention' : 'linear_attention')),
    attention: { numHeads: 8, numKvHeads: 2, headDim: 256, ropeTheta: 1e7, rotaryDim: 64 },
    deltaNet: { numKeyHeads: 16, numValueHeads: 16, keyHeadDim: 128, valueHeadDim: 128, convKernel: 4 },
    torchDtype: 'bfloat16',
  };
}

/**
 * FLOPs per token through layers 0..L (2 per multiply-add): every projection, the DeltaNet's conv and its
 * recurrence (decay, retrieval, update and read-out: 4 dk x dv passes per value head), and causal attention
 * (mean (T+1)/2 keys). Everything here is work every token does (no routing).
 */
export function qwen35FlopsPerToken(c: Qwen35Config, layer: number, seq: number): number {
  const D = c.hiddenSize, F = c.intermediateSize;
  const { numKeyHeads: Hk, numValueHeads: Hv, keyHeadDim: dk, valueHeadDim: dv, convKernel: K } = c.deltaNet;
  const { numHeads: H, numKvHeads: KV, headDim: hd } = c.attention;
  const C = 2 * Hk * dk + Hv * dv;
  const mlp = 2 * 3 * D * F;
  const deltaNet = 2 * D * (C + Hv * dv + 2 * Hv) + 2 * Hv * dv * D + 2 * K * C + Hv * 4 * 2 * dk * dv;
  const attention = 2 * D * (2 * H * hd + 2 * KV * hd) + 2 * H * hd * D + 2 * 2 * H * hd * ((seq + 1) / 2);
  let total = 0;
  for (let l = 0; l <= layer; l++) total += mlp + (c.layerTypes[l] === 'linear_attention' ? deltaNet : attention);
  return total;
}

/** A --keep directory from an earlier run with the same config and layers. */
export function sameQwen35Checkpoint(dir: string, c: Qwen35Config, lastLayer: number): boolean {
  try {
    const meta = SafetensorsFile.open(join(dir, 'model.safetensors'));
    const written = meta.metadata.last_layer;
    meta.close();
    return written === String(lastLayer) && readFileSync(join(dir, 'config.json'), 'utf8') === JSON.stringify(toQwen35HfConfigJson(c), null, 2);
  } catch {
    return false;
  }
}

/**
 * Random bf16 weights for layers 0..lastLayer: projections uniform with std 0.02, zero-centred norms 0 (scale 1),
 * the gated norm 1, A_log and dt_bias as trained models have them (decays exp(g) between about 0.6 and 1).
 */
export function writeRandomQwen35Checkpoint(dir: string, c: Qwen35Config, lastLayer: number, seed: number): void {
  mkdirSync(dir, { recursive: true });
  let s = seed >>> 0;
  const a = 0.02 * Math.sqrt(3);
  const uniform = () => {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5; // xorshift32
    return (s >>> 0) / 4294967296;
  };
  const t: Record<string, TensorToWrite> = {};
  for (const [name, shape] of qwen35RequiredTensors(c, lastLayer)) {
    const v = new Float32Array(shape.reduce((x, y) => x * y, 1));
    if (name.endsWith('linear_attn.norm.weight')) v.fill(1);
    else if (name.endsWith('A_log')) for (let i = 0; i < v.length; i++) v[i] = Math.log(0.02 + 0.3 * uniform());
    else if (name.endsWith('dt_bias')) for (let i = 0; i < v.length; i++) v[i] = Math.log(Math.expm1(0.3 + 0.6 * uniform()));
    else if (shape.length === 1) v.fill(0); // zero-centred RMSNorm weights: scale 1 + 0
    else for (let i = 0; i < v.length; i++) v[i] = (uniform() - 0.5) * 2 * a;
    // A_log and the gated norm are float32 in real checkpoints
    t[name] = name.endsWith('A_log') || name.endsWith('linear_attn.norm.weight') ? { dtype: 'F32', shape, data: v } : { dtype: 'BF16', shape, data: f32ToBf16(v) };
  }
  if (!t[embedName()]) throw new Error('qwen35RequiredTensors lists no embedding');
  writeFileSync(join(dir, 'config.json'), JSON.stringify(toQwen35HfConfigJson(c), null, 2));
  writeSafetensors(join(dir, 'model.safetensors'), t, { format: 'pt', last_layer: String(lastLayer) });
}
