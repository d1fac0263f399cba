/**
 * The peer the operating points are measured against: a character n-gram TF-IDF + logistic regression,
 * as scikit-learn users build it (TfidfVectorizer(analyzer='char_wb', ngram_range=(2, 5), sublinear_tf=True,
 * min_df=2) + LogisticRegression(C=1)), written here in TypeScript since there is no Python ML stack.
 *
 *   text -> lower case, whitespace collapsed -> each word padded with spaces -> its 2..5-grams
 *   column j = a distinct n-gram seen in >= 2 training texts; value (1 + ln tf) * idf, idf = ln((1+N)/(1+df)) + 1
 *   row L2-normalised -> logistic regression (L2, lambda = 1/N i.e. C = 1, no class weights) -> p >= 0.5
 *
 * The logistic regression is the project's own solver (src/head/logistic.ts), the same one the heads use.
 */
import { fitLogistic, sigmoid } from '../src/head/logistic.js';
import { stackRows, type SparseRow } from '../src/head/sparse.js';

function ngrams(text: string, min = 2, max = 5): Map<string, number> {
  const out = new Map<string, number>();
  for (const word of text.toLowerCase().split(/\s+/u).filter(Boolean)) {
    const w = [' ', ...word, ' ']; // code points
    for (let n = min; n <= max; n++)
      for (let i = 0; i + n <= w.length; i++) {
        const g = w.slice(i, i + n).join('');
        out.set(g, (out.get(g) ?? 0) + 1);
      }
  }
  return out;
}

export class CharTfidfPeer {
  private vocab = new Map<string, number>();
  private idf = new Float64Array(0);
  private weights: Float32Array = new Float32Array(0);
  private bias = 0;

  fit(texts: readonly string[], labels: readonly number[]): this {
    const grams = texts.map((t) => ngrams(t));
    const df = new Map<string, number>();
    for (const g of grams) for (const k of g.keys()) df.set(k, (df.get(k) ?? 0) + 1);
    const kept = [...df].filter(([, d]) => d >= 2).map(([k]) => k).sort();
    this.vocab = new Map(kept.map((k, i) => [k, i]));
    const n = texts.length;
    this.idf = Float64Array.from(kept, (k) => Math.log((1 + n) / (1 + df.get(k)!)) + 1);
    const X = stackRows(grams.map((g) => this.row(g)), kept.length);
    const fit = fitLogistic(X, labels, { lambda: 1 / n, classWeight: 'none' });
    this.weights = fit.weights;
    this.bias = fit.bias;
    return this;
  }

  probability(text: string): number {
    const r = this.row(ngrams(text));
    let z = this.bias;
    for (let k = 0; k < r.indices.length; k++) z += this.weights[r.indices[k]] * r.values[k];
    return sigmoid(z);
  }

  private row(g: Map<string, number>): SparseRow {
    const cells: [number, number][] = [];
    for (const [k, tf] of g) {
      const j = this.vocab.get(k);
      if (j !== undefined) cells.push([j, (1 + Math.log(tf)) * this.idf[j]]);
    }
    cells.sort((a, b) => a[0] - b[0]);
    let sq = 0;
    for (const [, v] of cells) sq += v * v;
    const s = sq > 0 ? 1 / Math.sqrt(sq) : 0;
    return { indices: Int32Array.from(cells, (c) => c[0]), values: Float32Array.from(cells, (c) => c[1] * s) };
  }
}
