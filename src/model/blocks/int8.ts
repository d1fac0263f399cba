/**
 * int8 graph pieces: quantized projections, a quantized embedding table, and the exact-candidate SAE encoder.
 * They take a GraphBuilder only; the precision module decides where they are used.
 *
 * Which onnxruntime kernel (first measured with `npm run -s bench -- int8-matmul`, M = 8 x 128 tokens, Qwen3-0.6B
 * projections, 2 threads, on a machine shared with other jobs; one run, all candidates alternating):
 *   one layer's four projections: f32 1903 ms; DynamicQuantizeMatMul 604 ms (x3.15); MatMulNBits 8-bit
 *   block 128 accuracy 4: 889 ms (x2.14), block 64: 1134 ms (x1.68); a per-row quantize + MatMulIntegerToFloat
 *   (uint8): 855 ms (x2.23); the same with int8 activations: 5130 ms (slow path in onnxruntime 1.30).
 *   Relative error of one projection vs float64, gaussian activations: DQMM 1.4e-2, NBits b128 9e-3; with two
 *   outlier channels and an outlier token (as Qwen residuals have): DQMM 4.1e-2, NBits b128 2.3e-2.
 * Default 'dqmm-row' (DynamicQuantizeMatMul fed per-row scaled activations, see dqmmPerRow), chosen by measurement
 * on 2026-12-02 (load average 21-25; all candidates alternating in one run):
 *   - `bench int8-matmul --candidates f32,dqmm,dqmm_row`: one layer's projections at 0.6B f32 1055 ms, dqmm 417 ms
 *     (x2.53), dqmm-row 475 ms (x2.22); at 1.7B 2378 / 1055 (x2.25) / 1258 ms (x1.89). An earlier run with NBits
 *     b128: 0.6B x1.46, 1.7B x1.63 (slower than dqmm-row at both shapes).
 *   - `bench precision-goldens` (every family, fired-set agreement with f32 / residual rel. RMS, right | left padded):
 *     dqmm 14.2|12.9% / 5.2%, 35.5|33.1%, 27.5%, 0%, 0% (qwen3 qscope, qwen3 saelens, qwen3-moe, qwen3.5, qwen3.5-moe);
 *     dqmm-row 21.3|21.3% / 3.4%, 45.2|45.2%, 41.5%, 5.2%, 3.6%; nbits8 b128 25.8|25.8% / 3.4%, 44.4%, 42.0%, 4.7%, 2.6%.
 *   dqmm-row is as accurate as NBits (1.5x more than dqmm), faster than NBits, and batch-independent: DQMM's one
 *   activation scale per batch made a text's features depend on its neighbours (right- vs left-padded goldens
 *   differed), which a moderation service must not do (test/int8-engine.test.ts checks a text's fired set alone, in
 *   both paddings and beside other texts). 'dqmm' (plain, batch-dependent) and 'nbits8' stay for measurement.
 * What int8 cannot do on these checkpoints: even weight-only int8 (float32 activations) leaves 2.2% residual error
 * on the dense goldens (40.6% agreement), and `bench precision-goldens --noise-floor` shows that 97% identical fired
 * sets needs a residual within about 1e-3 (relative) of float32's; see README "Precision".
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { formatError } from '../../errors.js';
import type { WeightSource } from '../checkpoint.js';
import { decodeToF32, DTYPE_BYTES } from '../dtypes.js';
import { GraphBuilder, TensorDataType, attr } from '../onnx/graph-builder.js';
import { type BlockedUint8, quantizeBlocked, quantizeColumns, quantizePerChannel } from '../quantize.js';

export type Int8Kernel = 'dqmm' | 'dqmm-row' | 'nbits8';
/**
 * How DynamicQuantizeMatMul's weights are stored. 's8': int8 in [-127, 127], the fast u8 x s8 kernel. On x86 CPUs
 * without VNNI (AVX2 only, e.g. the AMD EPYC CI machines), onnxruntime's u8 x s8 kernel multiplies with VPMADDUBSW,
 * which adds two u8 x s8 products into a SATURATING int16: 255 x 127 x 2 > 32,767, so full-range weights give wrong
 * sums (measured: 1.0 instead of 64; the 0.6B engine's residual 62% off float32). 's8-7bit': int8 in [-63, 63], which
 * cannot saturate (255 x 63 x 2 < 32,768), at half the weight resolution. 'u8': uint8 with zero point 128, the
 * u8 x u8 kernel (16-bit products, no saturation). Which one is chosen per machine: src/engine/int8-weight-form.ts.
 */
export type Int8WeightForm = 's8' | 's8-7bit' | 'u8';
export const DEFAULT_INT8_KERNEL: Int8Kernel = 'dqmm-row';
/** MatMulNBits block along K (block 128 measured faster than 32 and 64 at these shapes). */
export const NBITS_BLOCK = 128;

/** Everything about the int8 graph that is a choice rather than the checkpoint's: part of the graph cache key. */
export const INT8_GRAPH_CHOICES = {
  kernel: DEFAULT_INT8_KERNEL as Int8Kernel,
  /**
   * 'u8' (correct on every CPU) until src/engine/int8-weight-form.ts has probed this machine's kernel and found
   * full-range 's8' exact (VNNI, ARM): a graph built without the probe is slower, never wrong
   */
  weightForm: 'u8' as Int8WeightForm,
  /**
   * the SAE encoder of the int8 graph: 'exact-candidates' (int8 pre-activation picks k + m candidates, float32
   * recomputes them; sae-exact-candidates.ts) or 'f32' (the float32 Gemm over every feature, exact by construction).
   * 'f32' by measurement (ORT profile of one 8 x 128 batch, same run, in units of the batch's DynamicQuantizeMatMul
   * time; load average 16-28): at the 0.6B shape (16,384 x k50) Gemm 0.19 vs MatMulNBits + recomputation Loop +
   * their Cast/Sub/TopK about 0.5; at the 1.7B shape (32,768 x k50) 0.23 vs about 0.55. The price is memory: 4 bytes
   * per encoder weight instead of 3 (served weights 0.28x -> 0.30x of float32 at the 1.7B shape, see README).
   */
  saeEncoder: 'f32' as 'exact-candidates' | 'f32',
  /** the SAE's candidate pre-activation: per-row activations, so its error bound is per token (see sae-exact-candidates.ts) */
  saeKernel: 'nbits8' as Int8Kernel,
  /** how the recomputation stores W_enc rows (sae-exact-candidates.ts rowsTable) */
  saeRows: 'bf16-if-exact, else int8-shared+int16-low',
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

/** The largest |q| of a weight form: 63 for 's8-7bit', else 127. */
export function int8WeightLevels(form: Int8WeightForm = INT8_GRAPH_CHOICES.weightForm): number {
  return form === 's8-7bit' ? 63 : 127;
}

const MS = { domain: 'com.microsoft' };
const toF32 = { to: attr.int(TensorDataType.FLOAT) };

/** x [N, in] float32 @ W [in, out] -> [N, out] float32 with int8 weights; `wT` is float32 [in, out]. */
export function int8Linear(
  g: GraphBuilder, x: string, name: string, wT: Float32Array, inDim: number, outDim: number, kernel: Int8Kernel,
  bias?: { name: string; data: Float32Array }, form: Int8WeightForm = INT8_GRAPH_CHOICES.weightForm,
): string {
  if (kernel === 'dqmm' || kernel === 'dqmm-row') {
    const { q, scale } = quantizeColumns(wT, inDim, outDim, int8WeightLevels(form));
    const ws = g.weight(name + '.scale', TensorDataType.FLOAT, [outDim], scale);
    const b = bias ? g.weight(bias.name, TensorDataType.FLOAT, [outDim], bias.data) : null;
    const rows = kernel === 'dqmm-row' ? inDim + 2 : inDim; //                                               'dqmm-row': two zero rows for the anchor columns
    const wq = form === 'u8'
      ? g.weight(name + '.q', TensorDataType.UINT8, [rows, outDim], Uint8Array.from({ length: rows * outDim }, (_, i) => (i < q.length ? q[i] + 128 : 128)))
      : g.weight(name + '.q', TensorDataType.INT8, [rows, outDim], rows === inDim ? q : padRows(q, rows * outDim));
    const zp = form === 'u8' ? g.weight(name + '.zp', TensorDataType.UINT8, [outDim], new Uint8Array(outDim).fill(128)) : '';
    if (kernel === 'dqmm-row') return dqmmPerRow(g, x, wq, ws, zp, b);
    return g.op('DynamicQuantizeMatMul', b ? [x, wq, ws, zp, b] : zp ? [x, wq, ws, zp] : [x, wq, ws], {}, MS); // [N, out]
  }
  return nbits8MatMul(g, x, name, transposeF32(wT, inDim, outDim), inDim, outDim, bias);
}

/** x [N, in] @ w[out, in]^T (+ bias) with int8 weights; `w` in Hugging Face's [out, in] layout. */
export function int8LinearTransB(g: GraphBuilder, x: string, name: string, w: Float32Array, inDim: number, outDim: number, kernel: Int8Kernel, bias?: { name: string; data: Float32Array }): string {
  if (kernel === 'nbits8') return nbits8MatMul(g, x, name, w, inDim, outDim, bias);
  return int8Linear(g, x, name, transposeF32(w, outDim, inDim), inDim, outDim, kernel, bias);
}

/**
 * DynamicQuantizeMatMul with one activation scale PER ROW (per token), so a token's result never depends on the
 * other rows of its batch. DQMM derives its (asymmetric uint8) activation scale from the min and max of the whole
 * input; here every row is divided by its own max |x| (so it lies in [-1, 1]) and two constant columns (+1, -1) are
 * appended to every row, with zero weight rows, which pins the input's min and max to exactly -1 and 1 whatever the
 * batch holds: scale 2/255, zero point 128 for every batch. The product is multiplied back by each row's max:
 *   y[n] = rowmax[n] * dqmm([x[n] / rowmax[n], 1, -1])  ==  per-row activations (step rowmax / 127.5) x per-channel W
 * The same fast kernel as 'dqmm' (no slow int8 x int8 path), plus O(N (in + out)) elementwise work (columns rather
 * than an anchor row: no copy of the [N, out] output to drop a row, measured in bench int8-matmul).
 */
function dqmmPerRow(g: GraphBuilder, x: string, wqAnchored: string, ws: string, zp: string, bias: string | null): string {
  const rowMax = g.op('Max', [
    g.op('ReduceMax', [g.op('Abs', [x]), g.constI64('rowq_ax', [-1])], { keepdims: attr.int(1) }),
    g.constF32('rowq_tiny', [1e-30], []),
  ]); //                                                                                                      [N, 1]
  const n1 = g.op('Shape', [x], { start: attr.int(0), end: attr.int(1) }); //                                 [1] = N
  const anchor = g.op('Expand', [g.constF32('rowq_anchor', [1, -1], [1, 2]), g.op('Concat', [n1, g.constI64('rowq_two', [2])], { axis: attr.int(0) })]); // [N, 2]
  const xn = g.op('Concat', [g.op('Div', [x, rowMax]), anchor], { axis: attr.int(1) }); //                   [N, in+2]
  const y = g.op('DynamicQuantizeMatMul', zp ? [xn, wqAnchored, ws, zp] : [xn, wqAnchored, ws], {}, MS); //      [N, out]
  const out = g.op('Mul', [y, rowMax]); //                                                                    [N, out]
  return bias ? g.op('Add', [out, bias]) : out;
}

function nbits8MatMul(g: GraphBuilder, x: string, name: string, w: Float32Array, inDim: number, outDim: number, bias?: { name: string; data: Float32Array }): string {
  return nbits8MatMulBlocked(g, x, name, quantizeBlocked(w, outDim, inDim, NBITS_BLOCK), bias).y;
}

/** MatMulNBits (8 bits, accuracy level 4) on already-blocked weights; also returns the names of its B and scales. */
export function nbits8MatMulBlocked(g: GraphBuilder, x: string, name: string, p: BlockedUint8, bias?: { name: string; data: Float32Array }): { y: string; q: string; scale: string } {
  const q = g.weight(name + '.q', TensorDataType.UINT8, [p.rows, p.blocks, p.block], p.q);
  const scale = g.weight(name + '.scale', TensorDataType.FLOAT, [p.rows * p.blocks], p.scale);
  const y = g.op('MatMulNBits', [x, q, scale], {
    K: attr.int(p.cols), N: attr.int(p.rows), bits: attr.int(8), block_size: attr.int(p.block), accuracy_level: attr.int(4),
  }, MS); //                                                                                                   [N, out]
  return { y: bias ? g.op('Add', [y, g.weight(bias.name, TensorDataType.FLOAT, [p.rows], bias.data)]) : y, q, scale };
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

function padRows(q: Int8Array, length: number): Int8Array {
  const out = new Int8Array(length);
  out.set(q);
  return out;
}

export function transposeF32(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B)
    for (let c0 = 0; c0 < cols; c0 += B)
      for (let r = r0; r < Math.min(rows, r0 + B); r++) for (let c = c0; c < Math.min(cols, c0 + B); c++) out[c * rows + r] = src[r * cols + c];
  return out;
}
