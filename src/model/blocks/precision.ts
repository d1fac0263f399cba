/**
 * How the big matrices are stored and multiplied: decided here, once, for a whole graph. Blocks call
 * `precision.linear(...)` and never branch on the dtype themselves.
 *
 * 'f32': float32 weights, everything in float32 (CPU).
 * 'f16': float16 weights and float16 MatMuls/Gemm (half the memory; tensor cores on CUDA), activations cast to
 *        float16 at each projection and back; RMSNorm, RoPE, attention, routing, the residual stream and the
 *        SAE's TopK stay float32.
 * 'int8': symmetric int8 weights (per output channel; see ./int8.ts for the kernel and why), activations quantized
 *        dynamically with one scale per token (a text's result does not depend on its batch neighbours); the embedding table int8 per row; MoE experts through com.microsoft QMoE
 *        with 8-bit weights; norms, RoPE, attention, routing and the residual stream float32. The SAE encoder is
 *        the float32 Gemm (exact by construction; measured cheaper than the exact-candidate encoder of
 *        ./sae-exact-candidates.ts, where int8 pre-activations choose candidates and float32 recomputes them,
 *        which stays selectable with INT8_GRAPH_CHOICES.saeEncoder).
 */
import type { WeightSource } from '../checkpoint.js';
import { f32ToF16 } from '../dtypes.js';
import { GraphBuilder, TensorDataType, attr } from '../onnx/graph-builder.js';
import { quantizePerChannel } from '../quantize.js';
import { INT8_GRAPH_CHOICES, type Int8Kernel, int8Embedding, int8Linear, int8LinearTransB } from './int8.js';

export type WeightDtype = 'f32' | 'f16' | 'int8';

/** All experts of one MoE block, in the com.microsoft MoE layout, float32. */
export interface MoeExperts {
  name: string;
  /** [E, 2I, D], SwiGLU rows interleaved (g0, u0, g1, u1, ...) */
  fc1: Float32Array;
  /** [E, D, I] */
  fc2: Float32Array;
  shape: { hiddenSize: number; numExperts: number; topK: number; expertWidth: number; normTopK: boolean };
}

export interface Precision {
  readonly dtype: WeightDtype;
  /** x [N, in] float32 @ wT [in, out] (already transposed) -> [N, out] float32 */
  linear(g: GraphBuilder, x: string, name: string, wT: Float32Array, inDim: number, outDim: number): string;
  /** x [N, in] float32 @ w[out, in]^T + bias [out] (float32) -> [N, out] float32 (the SAE encoder's Gemm) */
  linearTransB(g: GraphBuilder, x: string, name: string, w: Float32Array, bias: { name: string; data: Float32Array }, inDim: number, outDim: number): string;
  /**
   * com.microsoft MoE on h [N, D] float32 with router logits [N, E] float32 -> [N, D] float32 (routing in
   * float32 in the kernel; see blocks/moe.ts).
   */
  moe(g: GraphBuilder, h: string, logits: string, experts: MoeExperts): string;
  /** rows `flatIds` [N] of the [rows, cols] table `name` -> [N, cols] float32 */
  embedding(g: GraphBuilder, w: WeightSource, name: string, flatIds: string, rows: number, cols: number): string;
  /** the SAE encoder: dense (pre-activation of every feature at this precision, then TopK) or exact-candidate */
  readonly saeEncoder: { kind: 'dense' } | { kind: 'exact-candidates'; extraCandidates: number; kernel: Int8Kernel };
}

const toF32 = { to: attr.int(TensorDataType.FLOAT) };

/** The MoE node: interleaved SwiGLU (the only form the CPU kernel takes), plain silu(g) * u, no clamp. */
function moeNode(g: GraphBuilder, h: string, logits: string, fc1: string, fc2: string, s: MoeExperts['shape']): string {
  return g.op('MoE', [h, logits, fc1, '', fc2], {
    k: attr.int(s.topK),
    activation_type: attr.string('swiglu'),
    swiglu_fusion: attr.int(1),
    activation_alpha: attr.float(1),
    activation_beta: attr.float(0),
    normalize_routing_weights: attr.int(s.normTopK ? 1 : 0),
  }, { domain: 'com.microsoft' });
}

const moeDims = (s: MoeExperts['shape']) => ({ fc1: [s.numExperts, 2 * s.expertWidth, s.hiddenSize], fc2: [s.numExperts, s.hiddenSize, s.expertWidth] });
const toF16 = { to: attr.int(TensorDataType.FLOAT16) };

const f32: Precision = {
  dtype: 'f32',
  saeEncoder: { kind: 'dense' },
  linear: (g, x, name, wT, inDim, outDim) => g.op('MatMul', [x, g.weight(name, TensorDataType.FLOAT, [inDim, outDim], wT)]),
  linearTransB: (g, x, name, w, bias, inDim, outDim) =>
    g.op('Gemm', [x, g.weight(name, TensorDataType.FLOAT, [outDim, inDim], w), g.weight(bias.name, TensorDataType.FLOAT, [outDim], bias.data)], { transB: attr.int(1) }),
  moe(g, h, logits, x) {
    const d = moeDims(x.shape);
    return moeNode(g, h, logits, g.weight(x.name + '.fc1', TensorDataType.FLOAT, d.fc1, x.fc1), g.weight(x.name + '.fc2', TensorDataType.FLOAT, d.fc2, x.fc2), x.shape);
  },
  embedding(g, w, name, flatIds, rows, cols) {
    // A bf16 table is gathered as bf16 then cast (half the memory of an f32 table; bf16 -> f32 is exact).
    if (w.info(name).dtype === 'BF16') {
      const table = g.weight(name, TensorDataType.BFLOAT16, [rows, cols], w.readRaw(name));
      return g.op('Cast', [g.op('Gather', [table, flatIds], { axis: attr.int(0) })], toF32);
    }
    return g.op('Gather', [g.weight(name, TensorDataType.FLOAT, [rows, cols], w.readF32(name)), flatIds], { axis: attr.int(0) });
  },
};

const f16: Precision = {
  dtype: 'f16',
  saeEncoder: { kind: 'dense' },
  linear(g, x, name, wT, inDim, outDim) {
    const y = g.op('MatMul', [g.op('Cast', [x], toF16), g.weight(name, TensorDataType.FLOAT16, [inDim, outDim], f32ToF16(wT))]);
    return g.op('Cast', [y], toF32);
  },
  linearTransB(g, x, name, w, bias, inDim, outDim) {
    const y = g.op('Gemm', [g.op('Cast', [x], toF16), g.weight(name, TensorDataType.FLOAT16, [outDim, inDim], f32ToF16(w))], { transB: attr.int(1) });
    return g.op('Add', [g.op('Cast', [y], toF32), g.weight(bias.name, TensorDataType.FLOAT, [outDim], bias.data)]);
  },
  moe(g, h, logits, x) {
    // The kernel takes one type T for input, logits and weights: logits in float16 round the router
    // probabilities to about 3 digits (routing near a tie may differ from float32).
    const d = moeDims(x.shape);
    const fc1 = g.weight(x.name + '.fc1', TensorDataType.FLOAT16, d.fc1, f32ToF16(x.fc1));
    const fc2 = g.weight(x.name + '.fc2', TensorDataType.FLOAT16, d.fc2, f32ToF16(x.fc2));
    return g.op('Cast', [moeNode(g, g.op('Cast', [h], toF16), g.op('Cast', [logits], toF16), fc1, fc2, x.shape)], toF32);
  },
  embedding(g, w, name, flatIds, rows, cols) {
    const table = g.weight(name, TensorDataType.FLOAT16, [rows, cols], f32ToF16(w.readF32(name)));
    return g.op('Cast', [g.op('Gather', [table, flatIds], { axis: attr.int(0) })], toF32);
  },
};

const int8: Precision = {
  dtype: 'int8',
  get saeEncoder() {
    return INT8_GRAPH_CHOICES.saeEncoder === 'f32'
      ? ({ kind: 'dense' } as const)
      : ({ kind: 'exact-candidates', extraCandidates: INT8_GRAPH_CHOICES.saeExtraCandidates, kernel: INT8_GRAPH_CHOICES.saeKernel } as const);
  },
  linear: (g, x, name, wT, inDim, outDim) => int8Linear(g, x, name, wT, inDim, outDim, INT8_GRAPH_CHOICES.kernel),
  // only the SAE encoder uses linearTransB: with saeEncoder 'f32' it is the float32 Gemm
  linearTransB: (g, x, name, w, bias, inDim, outDim) =>
    INT8_GRAPH_CHOICES.saeEncoder === 'f32' ? f32.linearTransB(g, x, name, w, bias, inDim, outDim) : int8LinearTransB(g, x, name, w, inDim, outDim, INT8_GRAPH_CHOICES.kernel, bias),
  moe(g, h, logits, x) {
    // com.microsoft QMoE, 8-bit experts: symmetric int8 per output row of every expert, stored as uint8 with zero
    // point 128 (measured on the qwen3-moe goldens: offset-128 storage gives the expected ~2% int8 error, two's
    // complement storage an error of 110%), float32 scales [E, rows]; routing and activations float32 as in MoE.
    const d = moeDims(x.shape);
    const { numExperts: E, expertWidth: I, hiddenSize: D } = x.shape;
    const q1 = quantizePerChannel(x.fc1, E * 2 * I, D), q2 = quantizePerChannel(x.fc2, E * D, I);
    const u8 = (q: Int8Array) => Uint8Array.from(q, (v) => v + 128);
    const s = x.shape;
    return g.op('QMoE', [
      h, logits,
      g.weight(x.name + '.fc1.q', TensorDataType.UINT8, d.fc1, u8(q1.q)), g.weight(x.name + '.fc1.scale', TensorDataType.FLOAT, [E, 2 * I], q1.scale), '',
      g.weight(x.name + '.fc2.q', TensorDataType.UINT8, d.fc2, u8(q2.q)), g.weight(x.name + '.fc2.scale', TensorDataType.FLOAT, [E, D], q2.scale),
    ], {
      k: attr.int(s.topK), activation_type: attr.string('swiglu'), swiglu_fusion: attr.int(1), activation_alpha: attr.float(1),
      activation_beta: attr.float(0), normalize_routing_weights: attr.int(s.normTopK ? 1 : 0), expert_weight_bits: attr.int(8),
    }, { domain: 'com.microsoft' });
  },
  embedding: (g, w, name, flatIds, rows, cols) =>
    INT8_GRAPH_CHOICES.embedding === 'int8' ? int8Embedding(g, w, name, flatIds, rows, cols) : f32.embedding(g, w, name, flatIds, rows, cols),
};

export function precisionFor(dtype: WeightDtype): Precision {
  return dtype === 'f16' ? f16 : dtype === 'int8' ? int8 : f32;
}
