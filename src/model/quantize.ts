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
/** `levels`: the largest |q| (127; 63 for the 7-bit form, src/model/blocks/int8.ts Int8WeightForm). */
export function quantizePerChannel(w: Float32Array, rows: number, cols: number, levels = 127): PerChannelInt8 {
  if (w.length !== rows * cols) throw new Error(`quantizePerChannel: ${w.length} values for [${rows}, ${cols}]`);
  const q = new Int8Array(rows * cols);
  const scale = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const at = r * cols;
    let m = 0;
    for (let c = 0; c < cols; c++) m = Math.max(m, Math.abs(w[at + c]));
    const s = Math.fround(m / levels);
    scale[r] = s;
    if (s === 0) continue;
    for (let c = 0; c < cols; c++) q[at + c] = Math.max(-levels, Math.min(levels, roundHalfAway(w[at + c] / s)));
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
export function quantizeColumns(wT: Float32Array, inDim: number, outDim: number, levels = 127): { q: Int8Array; scale: Float32Array } {
  if (wT.length !== inDim * outDim) throw new Error(`quantizeColumns: ${wT.length} values for [${inDim}, ${outDim}]`);
  const max = new Float32Array(outDim);
  for (let i = 0; i < inDim; i++) for (let o = 0; o < outDim; o++) max[o] = Math.max(max[o], Math.abs(wT[i * outDim + o]));
  const scale = max.map((m) => Math.fround(m / levels));
  const q = new Int8Array(inDim * outDim);
  for (let i = 0; i < inDim; i++)
    for (let o = 0; o < outDim; o++) {
      const s = scale[o];
      if (s !== 0) q[i * outDim + o] = Math.max(-levels, Math.min(levels, roundHalfAway(wT[i * outDim + o] / s)));
    }
  return { q, scale };
}

/** lo's fixed point: w ~ scale * ((q - 128) + lo * 2^-LOW_BITS). */
export const LOW_BITS = 15;

/**
 * The low part of a blocked quantization: int16 [rows, blocks, block] with lo = round((w / scale - (q - 128)) 2^15),
 * |lo| <= 2^14 (since |w / scale - (q - 128)| <= 1/2). Together with `p` it gives w to within scale (2^-16 + 2^-17)
 * (the second term: float32 rounding of the product; about 2^-22 of the block's largest |w|, float32's own precision
 * at that magnitude): a 24-bit fixed-point copy in 3 bytes per weight, of which `p.q` (1 byte) is the int8 matrix the
 * kernel already multiplies with.
 */
export function blockedLowPart(w: Float32Array, p: BlockedUint8): Int16Array {
  const lo = new Int16Array(p.q.length);
  for (let r = 0; r < p.rows; r++)
    for (let b = 0; b < p.blocks; b++) {
      const s = p.scale[r * p.blocks + b];
      if (s === 0) continue;
      const at = (r * p.blocks + b) * p.block, c0 = b * p.block, c1 = Math.min(p.cols, c0 + p.block);
      for (let c = c0; c < c1; c++) lo[at + c - c0] = roundHalfAway((w[r * p.cols + c] / s - (p.q[at + c - c0] - 128)) * 2 ** LOW_BITS);
    }
  return lo;
}

/** w[r, c] as the graph rebuilds it from (p, lo): fround(scale * ((q - 128) + lo 2^-15)), the sum exact in float32. */
export function splitValue(p: BlockedUint8, lo: Int16Array, r: number, c: number): number {
  const b = Math.floor(c / p.block), at = (r * p.blocks + b) * p.block + (c % p.block);
  return Math.fround(p.scale[r * p.blocks + b] * (p.q[at] - 128 + lo[at] * 2 ** -LOW_BITS));
}
