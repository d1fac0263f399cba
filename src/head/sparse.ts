/**
 * Compressed sparse rows: the only matrix layout the head uses. Real SAEs have 64K-128K features, so
 * an [N, d] dense matrix is never built; dense vectors of length d (weights, idf, gradients) are fine.
 *
 *   row i occupies indices[indptr[i] .. indptr[i+1]) and values[...] (column ids ascending within a row)
 */
import { validationError } from '../errors.js';

export interface CsrMatrix {
  nRows: number; //  N
  nCols: number; //  d
  /** int [N + 1] */
  indptr: Float64Array;
  /** int32 [nnz] column ids, ascending within each row */
  indices: Int32Array;
  /** float32 [nnz] */
  values: Float32Array;
}

export interface SparseRow {
  indices: Int32Array;
  values: Float32Array;
}

/** Stacks sparse rows into one CSR matrix. */
export function stackRows(rows: readonly SparseRow[], nCols: number): CsrMatrix {
  let nnz = 0;
  for (const r of rows) nnz += r.indices.length;
  const indptr = new Float64Array(rows.length + 1);
  const indices = new Int32Array(nnz);
  const values = new Float32Array(nnz);
  let at = 0;
  rows.forEach((r, i) => {
    indices.set(r.indices, at);
    values.set(r.values, at);
    at += r.indices.length;
    indptr[i + 1] = at;
  });
  return { nRows: rows.length, nCols, indptr, indices, values };
}

/** The rows `which` of `m`, in that order. */
export function selectRows(m: CsrMatrix, which: ArrayLike<number>): CsrMatrix {
  let nnz = 0;
  for (let k = 0; k < which.length; k++) nnz += m.indptr[which[k] + 1] - m.indptr[which[k]];
  const indptr = new Float64Array(which.length + 1);
  const indices = new Int32Array(nnz);
  const values = new Float32Array(nnz);
  let at = 0;
  for (let k = 0; k < which.length; k++) {
    const i = which[k];
    if (i < 0 || i >= m.nRows) throw validationError(`row ${i} out of range [0, ${m.nRows})`);
    const lo = m.indptr[i], hi = m.indptr[i + 1];
    indices.set(m.indices.subarray(lo, hi), at);
    values.set(m.values.subarray(lo, hi), at);
    at += hi - lo;
    indptr[k + 1] = at;
  }
  return { nRows: which.length, nCols: m.nCols, indptr, indices, values };
}

/** out[i] = X[i] . w + b   (X: [N, d], w: [d]) */
export function matVec(X: CsrMatrix, w: ArrayLike<number>, b: number, out = new Float64Array(X.nRows)): Float64Array {
  const { indptr, indices, values } = X;
  for (let i = 0; i < X.nRows; i++) {
    let z = b;
    for (let p = indptr[i], end = indptr[i + 1]; p < end; p++) z += values[p] * w[indices[p]];
    out[i] = z;
  }
  return out;
}

/** out[j] += sum_i X[i, j] r[i]   (X^T r, accumulated into out: [d]) */
export function addTransposeVec(X: CsrMatrix, r: ArrayLike<number>, out: Float64Array): Float64Array {
  const { indptr, indices, values } = X;
  for (let i = 0; i < X.nRows; i++) {
    const ri = r[i];
    if (ri === 0) continue;
    for (let p = indptr[i], end = indptr[i + 1]; p < end; p++) out[indices[p]] += values[p] * ri;
  }
  return out;
}
