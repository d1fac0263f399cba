/**
 * Symmetric int8 weight quantization: pure maths, one tensor at a time (the caller streams tensors from the
 * checkpoint, so no float32 copy of the whole model ever exists).
 *
 *   per output channel:  scale[o] = max_i |w[o, i]| / 127,   q[o, i] = round(w[o, i] / scale[o])  in [-127, 127]
 *   blocked (along in):  scale[o, b] = max_{i in block b} |w[o, i]| / 127, same rounding per block
 *
 * Dequantized weights are q * scale, so |w - q * scale| <= scale / 2 element-wise: the bound the exact-candidate
 * SAE encoder and the fidelity tests use. Round half away from zero (what onnxruntime's quantizers do, and what
 * Math.round does not do for negatives). A row of zeros gets scale 0 and q 0 (dequantizes exactly).
 */

export interface PerChannelInt8 {
  rows: number; //  out
  cols: number; //  in
  /** int8 [rows, cols], row-major like the source */
  q: Int8Array;
  /** float32 [rows] */
  scale: Float32Array;
}

export interface BlockedUint8 {
  rows: number; //   out (N)
  cols: number; //   in (K)
  block: number;
  blocks: number; // ceil(cols / block)
  /** uint8 [rows, blocks, block] = q + 128 (zero point 128), the tail of the last block padded with 128 (= 0) */
  q: Uint8Array;
  /** float32 [rows, blocks] */
  scale: Float32Array;
}

const roundHalfAway = (x: number) => (x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5));

/** w: [rows, cols] row-major (Hugging Face's Linear layout [out, in]). */
export function quantizePerChannel(w: Float32Array, rows: number, cols: number): PerChannelInt8 {
  if (w.length !== rows * cols) throw new Error(`quantizePerChannel: ${w.length} values for [${rows}, ${cols}]`);
  const q = new Int8Array(rows * cols);
  const scale = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const at = r * cols;
    let m = 0;
    for (let c = 0; c < cols; c++) m = Math.max(m, Math.abs(w[at + c]));
    const s = Math.fround(m / 127);
    scale[r] = s;
    if (s === 0) continue;
    for (let c = 0; c < cols; c++) q[at + c] = Math.max(-127, Math.min(127, roundHalfAway(w[at + c] / s)));
  }
  return { rows, cols, q, scale };
}

/** Blocked symmetric quantization in MatMulNBits' 8-bit layout (zero point 128). w: [rows, cols] row-major. */
export function quantizeBlocked(w: Float32Array, rows: number, cols: number, block: number): BlockedUint8 {
  if (w.length !== rows * cols) throw new Error(`quantizeBlocked: ${w.length} values for [${rows}, ${cols}]`);
  const blocks = Math.ceil(cols / block);
  const q = new Uint8Array(rows * blocks * block).fill(128);
  const scale = new Float32Array(rows * blocks);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < blocks; b++) {
      const c0 = b * block, c1 = Math.min(cols, c0 + block);
      let m = 0;
      for (let c = c0; c < c1; c++) m = Math.max(m, Math.abs(w[r * cols + c]));
      const s = Math.fround(m / 127);
      scale[r * blocks + b] = s;
      if (s === 0) continue;
      const out = (r * blocks + b) * block - c0;
      for (let c = c0; c < c1; c++) q[out + c] = 128 + Math.max(-127, Math.min(127, roundHalfAway(w[r * cols + c] / s)));
    }
  }
  return { rows, cols, block, blocks, q, scale };
}

/** Dequantize (for tests and error bounds): float32 [rows, cols]. */
export function dequantizePerChannel(p: PerChannelInt8): Float32Array {
  const out = new Float32Array(p.rows * p.cols);
  for (let r = 0; r < p.rows; r++) for (let c = 0; c < p.cols; c++) out[r * p.cols + c] = p.q[r * p.cols + c] * p.scale[r];
  return out;
}

/** [rows, cols] int8 row-major -> [cols, rows] (MatMul's [in, out] layout), in cache-friendly tiles. */
export function transposeI8(src: Int8Array, rows: number, cols: number): Int8Array {
  const dst = new Int8Array(rows * cols);
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) dst[c * rows + r] = src[r * cols + c];
    }
  }
  return dst;
}

/**
 * Per-output-channel quantization of a matrix already in MatMul's [in, out] layout (columns are output
 * channels): int8 [in, out] + scale [out]. Same maths as quantizePerChannel on the [out, in] original.
 */
export function quantizeColumns(wT: Float32Array, inDim: number, outDim: number): { q: Int8Array; scale: Float32Array } {
  if (wT.length !== inDim * outDim) throw new Error(`quantizeColumns: ${wT.length} values for [${inDim}, ${outDim}]`);
  const max = new Float32Array(outDim);
  for (let i = 0; i < inDim; i++) for (let o = 0; o < outDim; o++) max[o] = Math.max(max[o], Math.abs(wT[i * outDim + o]));
  const scale = max.map((m) => Math.fround(m / 127));
  const q = new Int8Array(inDim * outDim);
  for (let i = 0; i < inDim; i++)
    for (let o = 0; o < outDim; o++) {
      const s = scale[o];
      if (s !== 0) q[i * outDim + o] = Math.max(-127, Math.min(127, roundHalfAway(wT[i * outDim + o] / s)));
    }
  return { q, scale };
}
