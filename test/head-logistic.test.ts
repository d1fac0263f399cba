import { describe, expect, it } from 'vitest';
import { fitLogistic, sigmoid } from '../src/head/logistic.js';
import { addTransposeVec, matVec, type CsrMatrix } from '../src/head/sparse.js';
import { seededRandom } from '../src/util/random.js';
import { cosine, gaussian, plantedLogistic } from './head-synthetic.js';

function accuracy(z: Float64Array, y: Uint8Array): number {
  let ok = 0;
  z.forEach((zi, i) => (ok += (zi > 0 ? 1 : 0) === y[i] ? 1 : 0));
  return ok / y.length;
}

/** Gradient of the mean log-loss plus (l2 / 2) ||w||^2 at (w, b), unweighted: [d] and d/db. */
function smoothGradient(X: CsrMatrix, y: Uint8Array, w: Float32Array, b: number, l2: number) {
  const r = Float64Array.from(matVec(X, w, b), (z, i) => (sigmoid(z) - y[i]) / y.length);
  const g = addTransposeVec(X, r, new Float64Array(X.nCols)).map((v, j) => v + l2 * w[j]);
  return { g, gb: r.reduce((s, v) => s + v, 0) };
}

describe('logistic regression on sparse rows', () => {
  const d = 300;
  const rand = seededRandom(7);
  const wTrue = Float64Array.from({ length: d }, () => 2 * gaussian(rand));
  const train = plantedLogistic({ n: 6000, d, nnzPerRow: 25, wTrue, bTrue: -0.5, seed: 1 });
  const test = plantedLogistic({ n: 2000, d, nnzPerRow: 25, wTrue, bTrue: -0.5, seed: 2 });

  it('recovers a planted weight vector (L2, L-BFGS)', () => {
    const fit = fitLogistic(train.X, train.y, { lambda: 1e-6, classWeight: 'none' });
    expect(fit.converged).toBe(true);
    expect(fit.solver).toBe('lbfgs');
    expect(cosine(fit.weights, wTrue)).toBeGreaterThan(0.95);
    expect(fit.bias).toBeGreaterThan(-1.5);
    expect(fit.bias).toBeLessThan(0.5);
    // Bayes accuracy of the planted model bounds what any fit can reach on fresh data
    const bayes = accuracy(matVec(test.X, wTrue, -0.5), test.y);
    expect(accuracy(matVec(test.X, fit.weights, fit.bias), test.y)).toBeGreaterThan(bayes - 0.02);
  });

  it('is deterministic: the same data gives bit-identical weights', () => {
    const a = fitLogistic(train.X, train.y, { lambda: 1e-3 });
    const b = fitLogistic(train.X, train.y, { lambda: 1e-3 });
    expect(Buffer.from(a.weights.buffer).equals(Buffer.from(b.weights.buffer))).toBe(true);
    expect(a.bias).toBe(b.bias);
  });

  it('stronger L2 shrinks the weights', () => {
    const weak = fitLogistic(train.X, train.y, { lambda: 1e-5 });
    const strong = fitLogistic(train.X, train.y, { lambda: 1e-1 });
    const norm = (w: Float32Array) => Math.hypot(...w);
    expect(norm(strong.weights)).toBeLessThan(0.5 * norm(weak.weights));
  });

  it('elastic net (OWL-QN) zeroes features that carry no signal and keeps the ones that do', () => {
    const wSparse = new Float64Array(d);
    for (let j = 0; j < 20; j++) wSparse[j] = j % 2 === 0 ? 3 : -3;
    const data = plantedLogistic({ n: 6000, d, nnzPerRow: 25, wTrue: wSparse, bTrue: 0, seed: 3 });
    const fit = fitLogistic(data.X, data.y, { lambda: 0.005, l1Ratio: 0.9, classWeight: 'none' });
    expect(fit.converged).toBe(true);
    expect(fit.solver).toBe('owlqn');
    let zeroIrrelevant = 0;
    for (let j = 20; j < d; j++) if (fit.weights[j] === 0) zeroIrrelevant++;
    expect(zeroIrrelevant / (d - 20)).toBeGreaterThan(0.95);
    for (let j = 0; j < 20; j++) expect(Math.sign(fit.weights[j])).toBe(Math.sign(wSparse[j]));
    // the pure L2 fit on the same data leaves (almost) every weight non-zero
    const ridge = fitLogistic(data.X, data.y, { lambda: 0.005, classWeight: 'none' });
    expect(ridge.nonZero).toBeGreaterThan(d - 5);
  });

  it('stops at the optimum: zero gradient for L2, subgradient conditions for elastic net', () => {
    const lambda = 0.004, l1Ratio = 0.5;
    const ridge = fitLogistic(train.X, train.y, { lambda, classWeight: 'none' });
    const r = smoothGradient(train.X, train.y, ridge.weights, ridge.bias, lambda);
    expect(Math.max(...r.g.map(Math.abs), Math.abs(r.gb))).toBeLessThan(1e-5);

    const net = fitLogistic(train.X, train.y, { lambda, l1Ratio, classWeight: 'none' });
    const l1 = lambda * l1Ratio;
    const e = smoothGradient(train.X, train.y, net.weights, net.bias, lambda * (1 - l1Ratio));
    expect(net.nonZero).toBeGreaterThan(20);
    expect(net.nonZero).toBeLessThan(d);
    expect(Math.abs(e.gb)).toBeLessThan(1e-5);
    net.weights.forEach((w, j) => {
      if (w !== 0) expect(Math.abs(e.g[j] + l1 * Math.sign(w)), `feature ${j}`).toBeLessThan(1e-4);
      else expect(Math.abs(e.g[j]), `feature ${j}`).toBeLessThanOrEqual(l1 + 1e-4);
    });
  });

  it("'balanced' class weights move the intercept towards the minority class", () => {
    const skew = plantedLogistic({ n: 4000, d, nnzPerRow: 25, wTrue, bTrue: -4, seed: 4 });
    const plain = fitLogistic(skew.X, skew.y, { lambda: 1e-3, classWeight: 'none' });
    const balanced = fitLogistic(skew.X, skew.y, { lambda: 1e-3, classWeight: 'balanced' });
    const meanP = (w: Float32Array, b: number) => matVec(skew.X, w, b).reduce((s, z) => s + sigmoid(z), 0) / skew.y.length;
    expect(meanP(balanced.weights, balanced.bias)).toBeGreaterThan(meanP(plain.weights, plain.bias) + 0.05);
  });

  it('rejects labels other than 0/1 and a single class under balanced weights', () => {
    expect(() => fitLogistic(train.X, Uint8Array.from(train.y, (v) => v * 2))).toThrow(/label \d+ is 2/);
    expect(() => fitLogistic(train.X, new Uint8Array(train.y.length))).toThrow(/both classes/);
  });
});
