/** Weight layout helpers: Hugging Face Linear weights are [out, in]; the graph multiplies x [N, in] by [in, out]. */
import type { WeightSource } from '../checkpoint.js';

/** [rows, cols] row-major -> [cols, rows]. */
export function transposed(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  transposeInto(src, rows, cols, out, rows, 0);
  return out;
}

/** Read [out_i, inDim] matrices, stack them along rows, then transpose: [inDim, sum(out_i)]. */
export function fusedTransposed(w: WeightSource, names: string[], inDim: number): Float32Array {
  return stackTransposed(names.map((n) => w.readF32(n)), inDim);
}

/** Stack [out_i, inDim] matrices along rows, then transpose: [inDim, sum(out_i)]. */
export function stackTransposed(mats: Float32Array[], inDim: number): Float32Array {
  const rows = mats.map((m) => m.length / inDim);
  const total = rows.reduce((a, b) => a + b, 0);
  const out = new Float32Array(inDim * total);
  let at = 0;
  mats.forEach((m, i) => {
    transposeInto(m, rows[i], inDim, out, total, at);
    at += rows[i];
  });
  return out;
}

/** dst[c * dstCols + colOffset + r] = src[r * cols + c], in cache-friendly tiles. */
export function transposeInto(src: Float32Array, rows: number, cols: number, dst: Float32Array, dstCols: number, colOffset: number): void {
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) {
        const s = r * cols;
        for (let cc = c0; cc < c1; cc++) dst[cc * dstCols + colOffset + r] = src[s + cc];
      }
    }
  }
}
