/**
 * How the big matrices are stored and multiplied: decided here, once, for a whole graph. Blocks call
 * `precision.linear(...)` and never branch on the dtype themselves.
 *
 * 'f32': float32 weights, everything in float32 (CPU).
 * 'f16': float16 weights and float16 MatMuls/Gemm (half the memory; tensor cores on CUDA), activations cast to
 *        float16 at each projection and back; RMSNorm, RoPE, attention, routing, the residual stream and the
 *        SAE's TopK stay float32.
 * 'int8': symmetric int8 weights (per output channel; see ./int8.ts for the kernel and why), activations quantized
 *        dynamically inside the kernel; the embedding table int8 per row; norms, RoPE, attention, routing and the
 *        residual stream float32. The SAE encoder is the exact-candidate one (./sae-exact-candidates.ts): int8
 *        pre-activations choose candidates, float32 recomputes them.
 */
import type { WeightSource } from '../checkpoint.js';
import { f32ToF16 } from '../dtypes.js';
import { GraphBuilder, TensorDataType, attr } from '../onnx/graph-builder.js';
import { INT8_GRAPH_CHOICES, type Int8Kernel, int8Embedding, int8Linear, int8LinearTransB } from './int8.js';

export type WeightDtype = 'f32' | 'f16' | 'int8';

export interface Precision {
  readonly dtype: WeightDtype;
  /** x [N, in] float32 @ wT [in, out] (already transposed) -> [N, out] float32 */
  linear(g: GraphBuilder, x: string, name: string, wT: Float32Array, inDim: number, outDim: number): string;
  /** x [N, in] float32 @ w[out, in]^T + bias [out] (float32) -> [N, out] float32 (the SAE encoder's Gemm) */
  linearTransB(g: GraphBuilder, x: string, name: string, w: Float32Array, bias: { name: string; data: Float32Array }, inDim: number, outDim: number): string;
  /** rows `flatIds` [N] of the [rows, cols] table `name` -> [N, cols] float32 */
  embedding(g: GraphBuilder, w: WeightSource, name: string, flatIds: string, rows: number, cols: number): string;
  /** the SAE encoder: dense (pre-activation of every feature at this precision, then TopK) or exact-candidate */
  readonly saeEncoder: { kind: 'dense' } | { kind: 'exact-candidates'; extraCandidates: number; kernel: Int8Kernel };
}

const toF32 = { to: attr.int(TensorDataType.FLOAT) };
const toF16 = { to: attr.int(TensorDataType.FLOAT16) };

const f32: Precision = {
  dtype: 'f32',
  saeEncoder: { kind: 'dense' },
  linear: (g, x, name, wT, inDim, outDim) => g.op('MatMul', [x, g.weight(name, TensorDataType.FLOAT, [inDim, outDim], wT)]),
  linearTransB: (g, x, name, w, bias, inDim, outDim) =>
    g.op('Gemm', [x, g.weight(name, TensorDataType.FLOAT, [outDim, inDim], w), g.weight(bias.name, TensorDataType.FLOAT, [outDim], bias.data)], { transB: attr.int(1) }),
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
  embedding(g, w, name, flatIds, rows, cols) {
    const table = g.weight(name, TensorDataType.FLOAT16, [rows, cols], f32ToF16(w.readF32(name)));
    return g.op('Cast', [g.op('Gather', [table, flatIds], { axis: attr.int(0) })], toF32);
  },
};

const int8: Precision = {
  dtype: 'int8',
  saeEncoder: { kind: 'exact-candidates', extraCandidates: INT8_GRAPH_CHOICES.saeExtraCandidates, kernel: INT8_GRAPH_CHOICES.saeKernel },
  linear: (g, x, name, wT, inDim, outDim) => int8Linear(g, x, name, wT, inDim, outDim, INT8_GRAPH_CHOICES.kernel),
  linearTransB: (g, x, name, w, bias, inDim, outDim) => int8LinearTransB(g, x, name, w, inDim, outDim, INT8_GRAPH_CHOICES.kernel, bias),
  embedding: (g, w, name, flatIds, rows, cols) =>
    INT8_GRAPH_CHOICES.embedding === 'int8' ? int8Embedding(g, w, name, flatIds, rows, cols) : f32.embedding(g, w, name, flatIds, rows, cols),
};

export function precisionFor(dtype: WeightDtype): Precision {
  return dtype === 'f16' ? f16 : dtype === 'int8' ? int8 : f32;
}
