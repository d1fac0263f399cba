/**
 * int8 graph pieces: quantized projections, a quantized embedding table, and the exact-candidate SAE encoder.
 * They take a GraphBuilder only; the precision module decides where they are used.
 *
 * Which onnxruntime kernel (measured with `npm run -s bench -- int8-matmul`, M = 8 x 128 tokens, Qwen3-0.6B
 * projections, 2 threads, on a machine shared with other jobs; one run, all candidates alternating):
 *   one layer's four projections: f32 1903 ms; DynamicQuantizeMatMul 604 ms (x3.15); MatMulNBits 8-bit
 *   block 128 accuracy 4: 889 ms (x2.14), block 64: 1134 ms (x1.68); a per-row quantize + MatMulIntegerToFloat
 *   (uint8): 855 ms (x2.23); the same with int8 activations: 5130 ms (slow path in onnxruntime 1.30).
 *   Relative error of one projection vs float64, gaussian activations: DQMM 1.4e-2, NBits b128 9e-3; with two
 *   outlier channels and an outlier token (as Qwen residuals have): DQMM 4.1e-2, NBits b128 2.3e-2.
 * DynamicQuantizeMatMul is the fastest by ~1.5x and holds the fidelity target end to end (fired-set agreement
 * measured by `bench engine --precision int8`), so it is the default kernel. Its one activation scale covers the
 * whole batch (as PyTorch's quantize_dynamic): a token's result moves slightly with what it is batched with,
 * inside the error bound the SAE encoder below accounts for. MatMulNBits quantizes activations per row and block
 * (batch-independent, more accurate with outliers) and stays selectable ('nbits8') for that reason.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { formatError } from '../../errors.js';
import type { WeightSource } from '../checkpoint.js';
import { decodeToF32, DTYPE_BYTES } from '../dtypes.js';
import { GraphBuilder, TensorDataType, attr } from '../onnx/graph-builder.js';
import { quantizeBlocked, quantizeColumns, quantizePerChannel } from '../quantize.js';

export type Int8Kernel = 'dqmm' | 'nbits8';
export const DEFAULT_INT8_KERNEL: Int8Kernel = 'dqmm';
/** MatMulNBits block along K (block 128 measured faster than 32 and 64 at these shapes). */
export const NBITS_BLOCK = 128;

/** Everything about the int8 graph that is a choice rather than the checkpoint's: part of the graph cache key. */
export const INT8_GRAPH_CHOICES = {
  kernel: DEFAULT_INT8_KERNEL,
  /** the SAE's candidate pre-activation: per-row activations, so its error bound is per token (see sae-exact-candidates.ts) */
  saeKernel: 'nbits8' as Int8Kernel,
  /** candidates beyond k recomputed in float32 */
  saeExtraCandidates: 32,
  /** tokens per step of the float32 recomputation Loop (see sae-exact-candidates.ts) */
  saeRecomputeChunk: 128,
  nbitsBlock: NBITS_BLOCK,
  /** MoE experts (precision.ts): com.microsoft QMoE, 8-bit, one scale per expert row, zero point 128 */
  experts: 'qmoe8-per-row',
  /** 'int8': per-row int8 table; 'source': the checkpoint's own bf16 (or f32) table */
  embedding: 'int8' as 'int8' | 'source',
};

const MS = { domain: 'com.microsoft' };
const toF32 = { to: attr.int(TensorDataType.FLOAT) };

/** x [N, in] float32 @ W [in, out] -> [N, out] float32 with int8 weights; `wT` is float32 [in, out]. */
export function int8Linear(g: GraphBuilder, x: string, name: string, wT: Float32Array, inDim: number, outDim: number, kernel: Int8Kernel, bias?: { name: string; data: Float32Array }): string {
  if (kernel === 'dqmm') {
    const { q, scale } = quantizeColumns(wT, inDim, outDim);
    const inputs = [x, g.weight(name + '.q', TensorDataType.INT8, [inDim, outDim], q), g.weight(name + '.scale', TensorDataType.FLOAT, [outDim], scale)];
    if (bias) inputs.push('', g.weight(bias.name, TensorDataType.FLOAT, [outDim], bias.data));
    return g.op('DynamicQuantizeMatMul', inputs, {}, MS); //                                                   [N, out]
  }
  return nbits8MatMul(g, x, name, transposeF32(wT, inDim, outDim), inDim, outDim, bias);
}

/** x [N, in] @ w[out, in]^T (+ bias) with int8 weights; `w` in Hugging Face's [out, in] layout. */
export function int8LinearTransB(g: GraphBuilder, x: string, name: string, w: Float32Array, inDim: number, outDim: number, kernel: Int8Kernel, bias?: { name: string; data: Float32Array }): string {
  if (kernel === 'nbits8') return nbits8MatMul(g, x, name, w, inDim, outDim, bias);
  return int8Linear(g, x, name, transposeF32(w, outDim, inDim), inDim, outDim, kernel, bias);
}

function nbits8MatMul(g: GraphBuilder, x: string, name: string, w: Float32Array, inDim: number, outDim: number, bias?: { name: string; data: Float32Array }): string {
  const p = quantizeBlocked(w, outDim, inDim, NBITS_BLOCK);
  const y = g.op('MatMulNBits', [x, g.weight(name + '.q', TensorDataType.UINT8, [outDim, p.blocks, NBITS_BLOCK], p.q), g.weight(name + '.scale', TensorDataType.FLOAT, [outDim * p.blocks], p.scale)], {
    K: attr.int(inDim), N: attr.int(outDim), bits: attr.int(8), block_size: attr.int(NBITS_BLOCK), accuracy_level: attr.int(4),
  }, MS); //                                                                                                   [N, out]
  return bias ? g.op('Add', [y, g.weight(bias.name, TensorDataType.FLOAT, [outDim], bias.data)]) : y;
}

/**
 * Rows `flatIds` [N] of the [rows, cols] table `name`, stored int8 per row (scale[r] = max|row| / 127), gathered
 * and dequantized: [N, cols] float32. The table is read from the checkpoint in chunks of rows (never as one
 * float32 copy: a 151,936 x 2,048 table would be 1.2 GB).
 */
export function int8Embedding(g: GraphBuilder, w: WeightSource, name: string, flatIds: string, rows: number, cols: number): string {
  const q = new Int8Array(rows * cols);
  const scale = new Float32Array(rows);
  forEachRowChunk(w, name, rows, cols, (r0, chunk, n) => {
    const p = quantizePerChannel(chunk, n, cols);
    q.set(p.q, r0 * cols);
    scale.set(p.scale, r0);
  });
  const table = g.weight(name + '.q', TensorDataType.INT8, [rows, cols], q);
  const rowScale = g.weight(name + '.scale', TensorDataType.FLOAT, [rows, 1], scale);
  const gathered = g.op('Cast', [g.op('Gather', [table, flatIds], { axis: attr.int(0) })], toF32); //        [N, cols]
  return g.op('Mul', [gathered, g.op('Gather', [rowScale, flatIds], { axis: attr.int(0) })]); //              [N, cols]
}

/** Decode a 2-D tensor `rowsPerChunk` rows at a time (about 16 MiB of float32 each). */
export function forEachRowChunk(w: WeightSource, name: string, rows: number, cols: number, fn: (row0: number, chunk: Float32Array, n: number) => void): void {
  const info = w.info(name);
  if (info.shape.length !== 2 || info.shape[0] !== rows || info.shape[1] !== cols)
    throw formatError(`${info.file}: tensor '${name}' has shape [${info.shape}], expected [${rows}, ${cols}]`);
  const bytesPerRow = cols * DTYPE_BYTES[info.dtype];
  const perChunk = Math.max(1, Math.floor((16 << 20) / (cols * 4)));
  const fd = openSync(info.file, 'r');
  try {
    for (let r0 = 0; r0 < rows; r0 += perChunk) {
      const n = Math.min(perChunk, rows - r0);
      const buf = new Uint8Array(n * bytesPerRow);
      let done = 0;
      while (done < buf.length) {
        const got = readSync(fd, buf, done, buf.length - done, info.offset + r0 * bytesPerRow + done);
        if (got === 0) throw formatError(`${info.file}: unexpected end of file in tensor '${name}'`);
        done += got;
      }
      fn(r0, decodeToF32(info.dtype, buf, info.file), n);
    }
  } finally {
    closeSync(fd);
  }
}

export function transposeF32(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B)
    for (let c0 = 0; c0 < cols; c0 += B)
      for (let r = r0; r < Math.min(rows, r0 + B); r++) for (let c = c0; c < Math.min(cols, c0 + B); c++) out[c * rows + r] = src[r * cols + c];
  return out;
}
