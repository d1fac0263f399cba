/**
 * The Gated DeltaNet token mixer (Qwen3.5's "linear attention") as ONNX nodes, exactly as Hugging Face's
 * Qwen3_5GatedDeltaNet computes it (torch_chunk_gated_delta_rule, float32):
 *
 *   x = h * mask                                   pads contribute nothing to the conv or the state
 *   [u | z | b | a] = x @ [W_qkv | W_z | W_b | W_a]^T        one MatMul
 *   c = silu(causal depthwise conv_K(u))             u, c [B, T, C], C = 2 Hk dk + Hv dv
 *   q, k, v = split(c);  q = l2norm(q) / sqrt(dk);  k = l2norm(k)        (HF's l2norm: eps 1e-6 inside the rsqrt)
 *   beta = sigmoid(b);  g = -exp(A_log) * softplus(a + dt_bias)          [B, T, Hv]
 *   per value head j (key head j / (Hv / Hk)):  S = exp(g_t) S;  S += k_t (x) beta_t (v_t - S^T k_t);  o_t = S^T q_t
 *   out = out_proj(rms(o) * norm.weight * silu(z))   gated RMSNorm per value head (plain weight, not zero-centred)
 *
 * Operator choices (onnxruntime 1.30 CPU; `npm run -s bench -- gdn-ops`):
 * - The recurrence is `com.microsoft` LinearAttention (update_rule gated_delta). It runs the per-token rule for
 *   every (sequence, value head) in parallel with MLAS gemv; the same rule unrolled into plain ops (batched
 *   MatMuls per step) was 13-29x slower in six runs at the Qwen3.5-2B shape (LinearAttention 140-300 ms, unrolled
 *   2.9-5.3 s, same outputs within 3.4e-8) and needs T fixed at build time. Facts checked here: it does not
 *   normalise q/k (done before it, with HF's eps), decay is the log factor g, more value heads than key heads are its
 *   "inverse GQA" (value head j reads query/key head j * Hk / Hv = HF's repeat_interleave; tested on Hv = 2 Hk and
 *   3 Hk against the reference), and left pads (zeroed input) leave the state at zero (tested: left-padded rows
 *   equal their unbatched runs).
 * - The conv is ai.onnx Conv (group = C, K-1 zeros of left padding) on [B, C, T], between two transposes. With
 *   SiLU at the 2B shape, runs alternating between the forms (`bench gdn-ops --iters 9`, load average ~27 on 2
 *   cores): Conv 520 / 395 ms, K shifted slices on [B, T, C] without transposes 662 / 501 ms, CausalConvWithState
 *   (SiLU fused, same transposes) 786 / 510 ms. Conv is fastest and a standard op (any execution provider).
 * - l2norm is RMSNormalization with eps/dk and scale 1/sqrt(dk): rms(x) / sqrt(dk) = x / sqrt(sum(x^2) + eps)
 *   exactly in real arithmetic; the query's extra 1/sqrt(dk) folds into its scale (1/dk), so LinearAttention
 *   runs with scale 1.
 */
import { TensorDataType, attr } from '../onnx/graph-builder.js';
import type { GraphBuilder } from '../onnx/graph-builder.js';
import { type BlockContext, shapeBT } from './context.js';
import { rmsNormWith } from './norm.js';
import { fusedTransposed, transposed } from './weights.js';

/** HF's l2norm epsilon for q and k (fixed in modeling_qwen3_5.py, not rms_norm_eps). */
export const L2NORM_EPS = 1e-6;

export interface GatedDeltaNetShape {
  numKeyHeads: number; //   Hk (query and key heads)
  numValueHeads: number; // Hv (a multiple of Hk)
  keyHeadDim: number; //    dk
  valueHeadDim: number; //  dv
  convKernel: number; //    K
}

/** The checkpoint tensors of one DeltaNet under `prefix` (e.g. 'model.language_model.layers.0.linear_attn.'), [out, in]. */
export function gatedDeltaNetTensors(prefix: string, D: number, s: GatedDeltaNetShape): Map<string, number[]> {
  const { numKeyHeads: Hk, numValueHeads: Hv, keyHeadDim: dk, valueHeadDim: dv, convKernel: K } = s;
  const C = 2 * Hk * dk + Hv * dv;
  return new Map([
    [prefix + 'in_proj_qkv.weight', [C, D]], // rows [q (Hk dk) | k (Hk dk) | v (Hv dv)], head-major
    [prefix + 'in_proj_z.weight', [Hv * dv, D]],
    [prefix + 'in_proj_b.weight', [Hv, D]],
    [prefix + 'in_proj_a.weight', [Hv, D]],
    [prefix + 'conv1d.weight', [C, 1, K]],
    [prefix + 'A_log', [Hv]],
    [prefix + 'dt_bias', [Hv]],
    [prefix + 'norm.weight', [dv]],
    [prefix + 'out_proj.weight', [D, Hv * dv]],
  ]);
}

/**
 * One Gated DeltaNet: h [N, D] (already input-normed) -> [N, D]. `realToken` is float [N, 1] (1 on real tokens).
 * `eps` is the gated output norm's rms_norm_eps.
 */
export function gatedDeltaNet(ctx: BlockContext, prefix: string, h: string, c: { hiddenSize: number; rmsNormEps: number; deltaNet: GatedDeltaNetShape }, realToken: string): string {
  const { g, w, precision } = ctx;
  const p = prefix;
  const D = c.hiddenSize;
  const { numKeyHeads: Hk, numValueHeads: Hv, keyHeadDim: dk, valueHeadDim: dv, convKernel: K } = c.deltaNet;
  const C = 2 * Hk * dk + Hv * dv;
  const x = g.op('Mul', [h, realToken]); //                                                               [N, D]

  const wIn = fusedTransposed(w, [p + 'in_proj_qkv.weight', p + 'in_proj_z.weight', p + 'in_proj_b.weight', p + 'in_proj_a.weight'], D);
  const proj = precision.linear(g, x, p + 'in_proj.weightT', wIn, D, C + Hv * dv + 2 * Hv); //          [N, C + Hv dv + 2 Hv]
  const [u, z, bIn, aIn] = g.node('Split', [proj, g.constI64('gdn_in_split', [C, Hv * dv, Hv, Hv])], { outputs: 4, attrs: { axis: attr.int(1) } });

  const act = causalConvSilu(g, g.op('Reshape', [u, shapeBT(ctx, 'gdn_btc', [C])]), w.readF32(p + 'conv1d.weight'), C, K); // [B, T, C]
  const [q, k, v] = g.node('Split', [act, g.constI64('gdn_qkv_split', [Hk * dk, Hk * dk, Hv * dv])], { outputs: 3, attrs: { axis: attr.int(2) } });

  // l2norm over each head's dk values (q also scaled by 1/sqrt(dk)), back to the packed [B, T, Hk*dk] layout.
  const headNorm = (t: string, scale: number) => {
    const perHead = g.op('Reshape', [t, g.constI64('gdn_heads', [0, 0, Hk, dk])]); //                    [B, T, Hk, dk]
    const normed = rmsNormWith(ctx, perHead, g.constF32('gdn_l2_scale', new Float32Array(dk).fill(scale)), L2NORM_EPS / dk);
    return g.op('Reshape', [normed, g.constI64('gdn_packed', [0, 0, Hk * dk])]); //                      [B, T, Hk*dk]
  };
  const qn = headNorm(q, 1 / dk);
  const kn = headNorm(k, 1 / Math.sqrt(dk));

  // beta = sigmoid(b), g = -exp(A_log) * softplus(a + dt_bias): [B, T, Hv]
  const negA = Float32Array.from(w.readF32(p + 'A_log'), (a) => -Math.exp(a)); // HF: -A_log.float().exp()
  const beta = g.op('Reshape', [g.op('Sigmoid', [bIn]), shapeBT(ctx, 'gdn_bth', [Hv])]);
  const softplus = g.op('Softplus', [g.op('Add', [aIn, g.constF32(p + 'dt_bias', w.readF32(p + 'dt_bias'))])]);
  const decay = g.op('Reshape', [g.op('Mul', [softplus, g.constF32(p + 'neg_A', negA)]), shapeBT(ctx, 'gdn_bth', [Hv])]);

  const [o] = g.node('LinearAttention', [qn, kn, v, '', decay, beta], {
    domain: 'com.microsoft',
    outputs: 2, // output, present_state (the final state: unused)
    attrs: {
      q_num_heads: attr.int(Hk),
      kv_num_heads: attr.int(Hv),
      update_rule: attr.string('gated_delta'),
      scale: attr.float(1), // q already carries 1/sqrt(dk)
    },
  }); //                                                                                                  [B, T, Hv*dv]

  // Gated RMSNorm per value head: rms(o) * norm.weight * silu(z)
  const oHeads = g.op('Reshape', [o, g.constI64('gdn_o_heads', [-1, Hv, dv])]); //                      [N, Hv, dv]
  const normed = rmsNormWith(ctx, oHeads, g.weight(p + 'norm.weight', TensorDataType.FLOAT, [dv], w.readF32(p + 'norm.weight')), c.rmsNormEps);
  const zHeads = g.op('Reshape', [z, g.constI64('gdn_z_heads', [-1, Hv, dv])]);
  const gated = g.op('Mul', [normed, g.op('Mul', [zHeads, g.op('Sigmoid', [zHeads])])]);
  const flat = g.op('Reshape', [gated, g.constI64('gdn_o_flat', [-1, Hv * dv])]); //                    [N, Hv*dv]
  return precision.linear(g, flat, p + 'out_proj.weightT', transposed(w.readF32(p + 'out_proj.weight'), D, Hv * dv), Hv * dv, D); // [N, D]
}

/**
 * silu(causal depthwise conv over time) on u [B, T, C] with HF's conv1d weight [C, 1, K] (no bias):
 * out_t = silu(sum_j w[:, j] * u_{t-K+1+j}), zeros before the start. Conv wants channels first: [B, C, T].
 */
export function causalConvSilu(g: GraphBuilder, u: string, weight: Float32Array, C: number, K: number): string {
  const bct = g.op('Transpose', [u], { perm: attr.ints([0, 2, 1]) }); //                                  [B, C, T]
  const w = g.weight('conv1d.weight', TensorDataType.FLOAT, [C, 1, K], weight);
  const conv = g.op('Conv', [bct, w], { group: attr.int(C), kernel_shape: attr.ints([K]), pads: attr.ints([K - 1, 0]) }); // [B, C, T]
  const act = g.op('Mul', [conv, g.op('Sigmoid', [conv])]);
  return g.op('Transpose', [act], { perm: attr.ints([0, 2, 1]) }); //                                    [B, T, C]
}
