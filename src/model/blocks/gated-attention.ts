/**
 * Gated full attention (Qwen3.5's Qwen3_5Attention, eager, float32) as ONNX nodes:
 *
 *   [q_h | gate_h] per head = q_proj(x)             q_proj rows interleave each head's query and output gate
 *   q = rms(q)(1 + q_norm);  k = rms(k_proj x)(1 + k_norm);  v = v_proj x      (zero-centred norms over hd)
 *   RoPE on the first rd = hd * partial_rotary_factor dims of q and k (rotate-half); dims rd.. pass through
 *   attn = softmax(q k^T / sqrt(hd) + causal/padding mask) v;  out = o_proj(attn * sigmoid(gate))
 *
 * The q_proj rows are regrouped at build time to [all queries | all gates] so query, gate, key and value come
 * from one MatMul; the attention core is the shared scaledDotProductAttention.
 */
import type { WeightSource } from '../checkpoint.js';
import { attr } from '../onnx/graph-builder.js';
import { scaledDotProductAttention, perHeadRmsNorm } from './attention.js';
import { type BlockContext, type DecoderInputs, shapeBT } from './context.js';
import { type RopeTables, applyRope } from './rope.js';
import { transposed } from './weights.js';

export interface GatedAttentionShape {
  numHeads: number; //   H
  numKvHeads: number; // KV
  headDim: number; //    hd
  ropeTheta: number;
  /** RoPE turns the first rotaryDim dims of each head */
  rotaryDim: number;
}

/** The checkpoint tensors of one gated attention under `prefix` (e.g. '...layers.3.self_attn.'), [out, in]. */
export function gatedAttentionTensors(prefix: string, D: number, s: GatedAttentionShape): Map<string, number[]> {
  const { numHeads: H, numKvHeads: KV, headDim: hd } = s;
  return new Map([
    [prefix + 'q_proj.weight', [H * 2 * hd, D]], // per head: hd query rows, then hd gate rows
    [prefix + 'k_proj.weight', [KV * hd, D]],
    [prefix + 'v_proj.weight', [KV * hd, D]],
    [prefix + 'o_proj.weight', [D, H * hd]],
    [prefix + 'q_norm.weight', [hd]],
    [prefix + 'k_norm.weight', [hd]],
  ]);
}

/** Gated full attention: h [N, D] (input-normed) -> [N, D]. */
export function gatedAttention(ctx: BlockContext, inputs: DecoderInputs, prefix: string, h: string, c: { hiddenSize: number; rmsNormEps: number; attention: GatedAttentionShape }, rope: RopeTables): string {
  const { g, w, precision } = ctx;
  const p = prefix;
  const D = c.hiddenSize, eps = c.rmsNormEps;
  const { numHeads: H, numKvHeads: KV, headDim: hd } = c.attention;

  const wqgkv = fusedQGateKV(w, p, D, H, KV, hd); //                                                   [D, 2 H hd + 2 KV hd]
  const qgkv = precision.linear(g, h, p + 'qgkv_proj.weightT', wqgkv, D, 2 * H * hd + 2 * KV * hd);
  const [q, gate, k, v] = g.node('Split', [qgkv, g.constI64('qgkv_split', [H * hd, H * hd, KV * hd, KV * hd])], { outputs: 4, attrs: { axis: attr.int(1) } });

  const qr = applyRope(ctx, perHeadRmsNorm(ctx, q, p + 'q_norm.weight', H, hd, eps, true), H, rope); //   [B, T, H*hd]
  const kr = applyRope(ctx, perHeadRmsNorm(ctx, k, p + 'k_norm.weight', KV, hd, eps, true), KV, rope); // [B, T, KV*hd]
  const v3 = g.op('Reshape', [v, shapeBT(ctx, 'v_width', [KV * hd])]); //                                 [B, T, KV*hd]
  const y = scaledDotProductAttention(ctx, qr, kr, v3, inputs.attnMask, c.attention); //                   [N, H*hd]
  const gated = g.op('Mul', [y, g.op('Sigmoid', [gate])]); //                                              [N, H*hd]
  return precision.linear(g, gated, p + 'o_proj.weightT', transposed(w.readF32(p + 'o_proj.weight'), D, H * hd), H * hd, D); // [N, D]
}

/** q_proj [H * 2hd, D] (per head: hd query rows, hd gate rows), k_proj, v_proj -> [D, H hd (queries) | H hd (gates) | KV hd | KV hd]. */
function fusedQGateKV(w: WeightSource, p: string, D: number, H: number, KV: number, hd: number): Float32Array {
  const qg = w.readF32(p + 'q_proj.weight');
  const rows = new Float32Array((2 * H * hd + 2 * KV * hd) * D); // [out, D], rows regrouped
  for (let h = 0; h < H; h++) {
    rows.set(qg.subarray(h * 2 * hd * D, (h * 2 + 1) * hd * D), h * hd * D); //            query rows of head h
    rows.set(qg.subarray((h * 2 + 1) * hd * D, (h + 1) * 2 * hd * D), (H + h) * hd * D); // gate rows of head h
  }
  rows.set(w.readF32(p + 'k_proj.weight'), 2 * H * hd * D);
  rows.set(w.readF32(p + 'v_proj.weight'), (2 * H + KV) * hd * D);
  return transposed(rows, 2 * H * hd + 2 * KV * hd, D);
}
