/**
 * Attention blocks. `scaledDotProductAttention` is the shared core (ai.onnx opset 23 Attention, grouped-query,
 * bool mask = causal AND key-is-real, which zeroes fully masked rows and keeps pad positions finite; see
 * NOTES.md for why not GroupQueryAttention or MultiHeadAttention). `qkNormAttention` is Qwen3's self-attention,
 * shared by qwen3 and qwen3_moe.
 */
import { attr } from '../onnx/graph-builder.js';
import { type BlockContext, type DecoderInputs, shapeBT } from './context.js';
import { rmsNorm } from './norm.js';
import { type RopeTables, applyRope } from './rope.js';
import { fusedTransposed, transposed } from './weights.js';

export interface AttentionShape {
  hiddenSize: number; // D
  numHeads: number; //   H
  numKvHeads: number; // KV
  headDim: number; //    hd
  rmsNormEps: number;
}

/** q [B, T, H*hd], k/v [B, T, KV*hd] -> softmax(q k^T / sqrt(hd) + mask) v, flattened to [N, H*hd]. */
export function scaledDotProductAttention(ctx: BlockContext, q: string, k: string, v: string, attnMask: string, s: Pick<AttentionShape, 'numHeads' | 'numKvHeads' | 'headDim'>): string {
  const { g } = ctx;
  const y = g.op('Attention', [q, k, v, attnMask], {
    q_num_heads: attr.int(s.numHeads),
    kv_num_heads: attr.int(s.numKvHeads),
    scale: attr.float(1 / Math.sqrt(s.headDim)),
    is_causal: attr.int(0),
  }); //                                                                                                   [B, T, H*hd]
  return g.op('Reshape', [y, g.constI64('attn_flat', [-1, s.numHeads * s.headDim])]); //                  [N, H*hd]
}

/** Per-head RMSNorm over head_dim: t [N, heads*hd] -> [B, T, heads*hd] (the 3D layout Attention reads). */
export function perHeadRmsNorm(ctx: BlockContext, t: string, name: string, heads: number, hd: number, eps: number, zeroCentred = false): string {
  const { g } = ctx;
  const perHead = g.op('Reshape', [t, g.constI64('heads', [0, heads, hd])]); //                           [N, heads, hd]
  const normed = rmsNorm(ctx, perHead, name, hd, { eps, zeroCentred });
  return g.op('Reshape', [normed, shapeBT(ctx, 'heads_width', [heads * hd])]); //                         [B, T, heads*hd]
}

/**
 * Qwen3Attention: h [N, D] -> o_proj(attn) [N, D]. q/k/v share one MatMul; q and k get a per-head RMSNorm
 * (q_norm, k_norm) before RoPE; query head j reads KV head j // (H / KV). `prefix` e.g. 'model.layers.3.self_attn.'.
 */
export function qkNormAttention(ctx: BlockContext, inputs: DecoderInputs, prefix: string, h: string, s: AttentionShape, rope: RopeTables): string {
  const { g, w, precision } = ctx;
  const p = prefix;
  const { numHeads: H, numKvHeads: KV, headDim: hd, hiddenSize: D } = s;
  const wqkv = fusedTransposed(w, [p + 'q_proj.weight', p + 'k_proj.weight', p + 'v_proj.weight'], D);
  const qkv = precision.linear(g, h, p + 'qkv_proj.weightT', wqkv, D, (H + 2 * KV) * hd); //           [N, (H+2KV)*hd]
  const [q, k, v] = g.node('Split', [qkv, g.constI64('qkv_split', [H * hd, KV * hd, KV * hd])], { outputs: 3, attrs: { axis: attr.int(1) } });
  const qr = applyRope(ctx, perHeadRmsNorm(ctx, q, p + 'q_norm.weight', H, hd, s.rmsNormEps), H, rope); // [B, T, H*hd]
  const kr = applyRope(ctx, perHeadRmsNorm(ctx, k, p + 'k_norm.weight', KV, hd, s.rmsNormEps), KV, rope); // [B, T, KV*hd]
  const v3 = g.op('Reshape', [v, shapeBT(ctx, 'v_width', [KV * hd])]); //                                  [B, T, KV*hd]
  const y = scaledDotProductAttention(ctx, qr, kr, v3, inputs.attnMask, s); //                              [N, H*hd]
  const wo = transposed(w.readF32(p + 'o_proj.weight'), D, H * hd);
  return precision.linear(g, y, p + 'o_proj.weightT', wo, H * hd, D); //                                   [N, D]
}
