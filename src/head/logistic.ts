/**
 * Logistic regression on sparse rows, full batch, with L2 or elastic-net regularisation.
 *
 * Objective over weights w: [d] and intercept b (never penalised), sample weights s_i:
 *
 *   F(w, b) = (1 / sum_i s_i) sum_i s_i [softplus(z_i) - y_i z_i]      z_i = x_i . w + b
 *           + lambda (1 - l1Ratio) / 2 ||w||^2  +  lambda l1Ratio ||w||_1
 *
 * Solver: L-BFGS (memory m) with a backtracking Armijo line search when l1Ratio = 0, and OWL-QN
 * (Andrew & Gao 2007: L-BFGS on the orthant-wise pseudo-gradient, steps projected onto the current
 * orthant) when l1Ratio > 0, which makes weights exactly zero. Both start at zero and use no
 * randomness, so a fit is deterministic. Converged means the pseudo-gradient's largest entry fell
 * below `gradTol` or F decreased by less than `fTol` (relative) in an iteration.
 *
 * Cost per evaluation: two passes over the non-zeros (X w and X^T r); no [N, d] dense matrix is built.
 */
import { validationError } from '../errors.js';
import { addTransposeVec, matVec, type CsrMatrix } from './sparse.js';

export type ClassWeight = 'balanced' | 'none' | { negative: number; positive: number };

export interface LogisticOptions {
  /**
   * overall regularisation strength (default 1 / N, sklearn's C = 1; measured on Qwen-token features of
   * the shared training data this default sits at the held-out ROC-AUC optimum both for 62k and 2.5k rows)
   */
  lambda?: number;
  /** 0 = pure L2, 1 = pure L1, in between = elastic net (default 0) */
  l1Ratio?: number;
  /** 'balanced' weighs each class by N / (2 N_class) (default 'balanced') */
  classWeight?: ClassWeight;
  fitIntercept?: boolean;
  maxIter?: number;
  /** L-BFGS history length (default 10) */
  memory?: number;
  gradTol?: number;
  fTol?: number;
}

export interface LogisticFit {
  /** float32 [d] */
  weights: Float32Array;
  bias: number;
  iterations: number;
  converged: boolean;
  /** final objective F */
  objective: number;
  /** number of non-zero weights */
  nonZero: number;
  solver: 'lbfgs' | 'owlqn';
}

export function fitLogistic(X: CsrMatrix, y: ArrayLike<number>, options: LogisticOptions = {}): LogisticFit {
  const l1Ratio = options.l1Ratio ?? 0;
  const fitIntercept = options.fitIntercept ?? true;
  const maxIter = options.maxIter ?? 500;
  const memory = options.memory ?? 10;
  const gradTol = options.gradTol ?? 1e-6;
  const fTol = options.fTol ?? 1e-10;
  const N = X.nRows, d = X.nCols;
  const lambda = options.lambda ?? 1 / Math.max(1, N);
  if (y.length !== N) throw validationError(`logistic: ${N} rows but ${y.length} labels`);
  if (!(lambda >= 0) || !(l1Ratio >= 0 && l1Ratio <= 1)) throw validationError(`logistic: need lambda >= 0 and 0 <= l1Ratio <= 1 (got ${lambda}, ${l1Ratio})`);
  const sw = sampleWeights(y, options.classWeight ?? 'balanced');
  const l2 = lambda * (1 - l1Ratio);
  const l1 = lambda * l1Ratio;
  const D = d + 1; // parameters: w (d) then b

  const z = new Float64Array(N);
  const r = new Float64Array(N);
  /** smooth part (loss + L2) and its gradient into g: [D] */
  const smooth = (x: Float64Array, g: Float64Array): number => {
    const b = fitIntercept ? x[d] : 0;
    matVec(X, x, b, z);
    let loss = 0, sumW = 0;
    for (let i = 0; i < N; i++) {
      const zi = z[i];
      const sp = zi > 0 ? zi + Math.log1p(Math.exp(-zi)) : Math.log1p(Math.exp(zi));
      loss += sw[i] * (sp - y[i] * zi);
      r[i] = sw[i] * (sigmoid(zi) - y[i]);
      sumW += sw[i];
    }
    const inv = 1 / sumW;
    g.fill(0);
    addTransposeVec(X, r, g);
    let gb = 0;
    for (let i = 0; i < N; i++) gb += r[i];
    let sq = 0;
    for (let j = 0; j < d; j++) {
      g[j] = g[j] * inv + l2 * x[j];
      sq += x[j] * x[j];
    }
    g[d] = fitIntercept ? gb * inv : 0;
    return loss * inv + 0.5 * l2 * sq;
  };
  const l1Norm = (x: Float64Array) => {
    let s = 0;
    for (let j = 0; j < d; j++) s += Math.abs(x[j]);
    return l1 * s;
  };
  /** orthant-wise pseudo-gradient of F (equals g when l1 = 0) */
  const pseudoGradient = (x: Float64Array, g: Float64Array, pg: Float64Array) => {
    for (let j = 0; j < D; j++) {
      if (l1 === 0 || j === d) pg[j] = g[j];
      else if (x[j] > 0) pg[j] = g[j] + l1;
      else if (x[j] < 0) pg[j] = g[j] - l1;
      else if (g[j] + l1 < 0) pg[j] = g[j] + l1;
      else if (g[j] - l1 > 0) pg[j] = g[j] - l1;
      else pg[j] = 0;
    }
  };

  let x = new Float64Array(D);
  let g = new Float64Array(D);
  let F = smooth(x, g) + l1Norm(x);
  const pg = new Float64Array(D);
  const dir = new Float64Array(D);
  let xNew = new Float64Array(D);
  let gNew = new Float64Array(D);
  const S: Float64Array[] = [], Y: Float64Array[] = [], rho: number[] = [];
  const alphaHist = new Float64Array(memory);
  let converged = false, iter = 0;

  for (; iter < maxIter; iter++) {
    pseudoGradient(x, g, pg);
    if (maxAbs(pg) <= gradTol) { converged = true; break; }
    // two-loop recursion: dir = -H pg
    for (let j = 0; j < D; j++) dir[j] = -pg[j];
    for (let k = S.length - 1; k >= 0; k--) {
      alphaHist[k] = rho[k] * dot(S[k], dir);
      axpy(-alphaHist[k], Y[k], dir);
    }
    if (S.length > 0) {
      const last = S.length - 1;
      scale(dir, dot(S[last], Y[last]) / dot(Y[last], Y[last]));
    }
    for (let k = 0; k < S.length; k++) {
      const beta = rho[k] * dot(Y[k], dir);
      axpy(alphaHist[k] - beta, S[k], dir);
    }
    if (l1 > 0) for (let j = 0; j < d; j++) if (dir[j] * pg[j] >= 0) dir[j] = 0; // keep only descent components
    let slope = dot(dir, pg);
    if (!(slope < 0)) { // lost descent (numerical): restart from steepest descent
      S.length = 0; Y.length = 0; rho.length = 0;
      for (let j = 0; j < D; j++) dir[j] = -pg[j];
      slope = dot(dir, pg);
    }
    // backtracking line search (projected onto the orthant of x for OWL-QN)
    let step = S.length === 0 ? 1 / Math.max(1, Math.sqrt(dot(pg, pg))) : 1;
    let FNew = Infinity, accepted = false;
    for (let tries = 0; tries < 60; tries++) {
      for (let j = 0; j < D; j++) {
        let v = x[j] + step * dir[j];
        if (l1 > 0 && j < d) {
          const orthant = x[j] !== 0 ? Math.sign(x[j]) : -Math.sign(pg[j]);
          if (Math.sign(v) !== orthant) v = 0;
        }
        xNew[j] = v;
      }
      FNew = smooth(xNew, gNew) + l1Norm(xNew);
      let decrease = 0;
      for (let j = 0; j < D; j++) decrease += pg[j] * (xNew[j] - x[j]);
      if (FNew <= F + 1e-4 * decrease) { accepted = true; break; }
      step *= 0.5;
    }
    if (!accepted) { converged = maxAbs(pg) <= Math.sqrt(gradTol); break; } // no progress possible at float precision
    const s = new Float64Array(D), yv = new Float64Array(D);
    for (let j = 0; j < D; j++) { s[j] = xNew[j] - x[j]; yv[j] = gNew[j] - g[j]; }
    const sy = dot(s, yv);
    if (sy > 1e-12) {
      if (S.length === memory) { S.shift(); Y.shift(); rho.shift(); }
      S.push(s); Y.push(yv); rho.push(1 / sy);
    }
    const rel = (F - FNew) / Math.max(Math.abs(F), Math.abs(FNew), 1);
    [x, xNew] = [xNew, x];
    [g, gNew] = [gNew, g];
    F = FNew;
    if (rel <= fTol) { converged = true; iter++; break; }
  }

  const weights = new Float32Array(d);
  let nonZero = 0;
  for (let j = 0; j < d; j++) {
    weights[j] = x[j];
    if (weights[j] !== 0) nonZero++;
  }
  return { weights, bias: fitIntercept ? x[d] : 0, iterations: iter, converged, objective: F, nonZero, solver: l1 > 0 ? 'owlqn' : 'lbfgs' };
}

/** Per-sample weights: 'balanced' gives each class total weight N / 2. */
export function sampleWeights(y: ArrayLike<number>, classWeight: ClassWeight): Float64Array {
  const n = y.length;
  let pos = 0;
  for (let i = 0; i < n; i++) {
    if (y[i] !== 0 && y[i] !== 1) throw validationError(`logistic: label ${i} is ${y[i]}, expected 0 or 1`);
    pos += y[i];
  }
  let wNeg = 1, wPos = 1;
  if (classWeight === 'balanced') {
    if (pos === 0 || pos === n) throw validationError(`logistic: both classes are needed (got ${pos} positive of ${n})`);
    wPos = n / (2 * pos);
    wNeg = n / (2 * (n - pos));
  } else if (classWeight !== 'none') {
    wPos = classWeight.positive;
    wNeg = classWeight.negative;
  }
  const sw = new Float64Array(n);
  for (let i = 0; i < n; i++) sw[i] = y[i] === 1 ? wPos : wNeg;
  return sw;
}

export function sigmoid(z: number): number {
  if (z >= 0) return 1 / (1 + Math.exp(-z));
  const e = Math.exp(z);
  return e / (1 + e);
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
function axpy(alpha: number, xv: Float64Array, out: Float64Array): void {
  for (let i = 0; i < out.length; i++) out[i] += alpha * xv[i];
}
function scale(v: Float64Array, c: number): void {
  for (let i = 0; i < v.length; i++) v[i] *= c;
}
function maxAbs(v: Float64Array): number {
  let m = 0;
  for (let i = 0; i < v.length; i++) m = Math.max(m, Math.abs(v[i]));
  return m;
}
