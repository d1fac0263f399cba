/**
 * A slow, naive, obviously-correct forward pass in plain TypeScript, written from the maths of Hugging Face's
 * modeling_qwen3.py and modeling_qwen3_moe.py (eager attention, eager experts: a loop over experts). It exists to check the ONNX engine: no tricks, no
 * fusion, every intermediate in float64 (weights are float32 as stored; RoPE tables are rounded to float32
 * exactly as HF builds them). Cost is O(L * B * T * (D * (H + KV) * hd + D * F + T * H * hd)): tiny models only.
 *
 * Notation: B batch, T sequence length, D hidden size, H query heads, KV key/value heads, hd head_dim,
 * F intermediate size. Tensors are flat row-major arrays; shapes are given in comments.
 */
import { formatError, validationError } from '../errors.js';
import type { WeightSource } from './checkpoint.js';
import type { ModelArch } from './families/family.js';
import type { Qwen3Config } from './families/qwen3.js';
import { type Qwen3MoeConfig, isMoeLayer } from './families/qwen3-moe.js';
import type { Qwen35Config } from './families/qwen3_5.js';
import type { Qwen35MoeConfig } from './families/qwen3_5_moe.js';
import { qwen35MoeReferenceForward } from './reference-qwen3_5_moe.js';
import { qwen35ReferenceForward } from './reference-qwen3_5.js';

export type Padding = 'right' | 'left';

export interface ReferenceInput {
  /** token ids, [B][T]: every row the same length */
  ids: number[][];
  /** 1 = real token, 0 = pad, [B][T]; default all ones */
  mask?: number[][];
  /** RoPE positions, [B][T]; default positionsFor(mask, 'right') (0..T-1 on every row) */
  positions?: number[][];
}

export interface ReferenceOutput {
  /** residPost[l]: the raw residual stream after decoder layer l (before model.norm), float32 [B, T, D] */
  residPost: Float32Array[];
  /** the routing of every MoE layer run: the k chosen experts of each token (by probability, descending) and their weights */
  router: Map<number, RouterChoice>;
  batch: number;
  seqLen: number;
  dModel: number;
}

export interface RouterChoice {
  k: number;
  /** [B, T, k] expert ids, by router probability descending */
  experts: Int32Array;
  /** [B, T, k] mixing weights (renormalised when the config says so) */
  weights: Float64Array;
}

/** Pad rows to the longest one. Right: HF's default positions 0..T-1; left: positions = cumsum(mask) - 1. */
export function padBatch(rows: number[][], padding: Padding, padId: number): Required<ReferenceInput> {
  const T = Math.max(0, ...rows.map((r) => r.length));
  const ids: number[][] = [];
  const mask: number[][] = [];
  for (const r of rows) {
    const pads = new Array<number>(T - r.length);
    ids.push(padding === 'right' ? [...r, ...pads.fill(padId)] : [...pads.fill(padId), ...r]);
    const ones = new Array<number>(r.length).fill(1);
    const zeros = new Array<number>(T - r.length).fill(0);
    mask.push(padding === 'right' ? [...ones, ...zeros] : [...zeros, ...ones]);
  }
  return { ids, mask, positions: positionsFor(mask, padding) };
}

/** Right padding: 0..T-1 on every row. Left padding: cumsum(mask) - 1, pads clamped to 0 (their values are meaningless). */
export function positionsFor(mask: number[][], padding: Padding): number[][] {
  if (padding === 'right') return mask.map((row) => row.map((_, t) => t));
  return mask.map((row) => {
    let seen = 0;
    return row.map((m) => Math.max(0, (seen += m ? 1 : 0) - 1));
  });
}

/** Run decoder layers 0..lastLayer of `arch`'s family and return every layer's residual stream. */
export function referenceForward(weights: WeightSource, arch: ModelArch, input: ReferenceInput, lastLayer = arch.config.numLayers - 1): ReferenceOutput {
  if (arch.family === 'qwen3_5') return qwen35ReferenceForward(weights, arch.config as Qwen35Config, input, lastLayer);
  if (arch.family === 'qwen3_5_moe') return qwen35MoeReferenceForward(weights, arch.config as Qwen35MoeConfig, input, lastLayer);
  if (arch.family !== 'qwen3' && arch.family !== 'qwen3_moe') throw formatError(`reference forward: no reference implementation for the ${arch.family} family`);
  const c = arch.config as Qwen3Config | Qwen3MoeConfig;
  const moe = arch.family === 'qwen3_moe' ? (c as Qwen3MoeConfig) : null;
  const B = input.ids.length;
  const T = B ? input.ids[0].length : 0;
  const D = c.hiddenSize;
  if (!Number.isInteger(lastLayer) || lastLayer < 0 || lastLayer >= c.numLayers)
    throw validationError(`reference forward: layer ${lastLayer} is out of range 0..${c.numLayers - 1}`);
  if (input.ids.some((r) => r.length !== T)) throw validationError('reference forward: rows of ids differ in length');
  const mask = input.mask ?? input.ids.map((r) => r.map(() => 1));
  const positions = input.positions ?? positionsFor(mask, 'right');

  // Embedding gather: x [B, T, D]
  const embed = weights.readF32('model.embed_tokens.weight'); // [V, D]
  const x = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++) {
      const id = input.ids[b][t];
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw validationError(`reference forward: token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`);
      for (let i = 0; i < D; i++) x[(b * T + t) * D + i] = embed[id * D + i];
    }

  const residPost: Float32Array[] = [];
  const router = new Map<number, RouterChoice>();
  for (let l = 0; l <= lastLayer; l++) {
    const p = `model.layers.${l}.mlp.`;
    const mlp: Mlp =
      moe && isMoeLayer(moe, l)
        ? (h, N) => {
            const r = moeMlp(h, N, D, weights.readF32(p + 'gate.weight'), moe, (e) => ({
              gate: weights.readF32(`${p}experts.${e}.gate_proj.weight`),
              up: weights.readF32(`${p}experts.${e}.up_proj.weight`),
              down: weights.readF32(`${p}experts.${e}.down_proj.weight`),
            }));
            router.set(l, { k: moe.topK, experts: r.experts, weights: r.weights });
            return r.out;
          }
        : (h, N) => denseMlp(h, N, D, (c as Qwen3Config).intermediateSize ?? (c as Qwen3MoeConfig).intermediateSize!, weights.readF32(p + 'gate_proj.weight'), weights.readF32(p + 'up_proj.weight'), weights.readF32(p + 'down_proj.weight'));
    decoderLayer(weights, c, l, x, B, T, mask, positions, mlp); // x [B, T, D] updated in place
    residPost.push(Float32Array.from(x));
  }
  return { residPost, router, batch: B, seqLen: T, dModel: D };
}

/** An MLP block: h [N, D] -> [N, D]. */
type Mlp = (h: Float64Array, N: number) => Float64Array;

/** down(silu(gate(h)) * up(h)) with HF Linear weights gate, up [F, D], down [D, F]. */
export function denseMlp(h: Float64Array, N: number, D: number, F: number, gateW: Float32Array, upW: Float32Array, downW: Float32Array): Float64Array {
  const gate = linear(h, gateW, N, D, F); // [N, F]
  const up = linear(h, upW, N, D, F); //     [N, F]
  for (let i = 0; i < gate.length; i++) gate[i] = (gate[i] / (1 + Math.exp(-gate[i]))) * up[i];
  return linear(gate, downW, N, F, D); //    [N, D]
}

export interface MoeSpec {
  numExperts: number;
  topK: number;
  expertWidth: number;
  normTopK: boolean;
}

/**
 * Hugging Face's sparse MoE block, token by token: p = softmax(h · router^T) over all experts; the k largest
 * (ties to the lower expert id); w = p_top / sum(p_top) when normTopK; out = Σ w_e · expert_e(h). A loop over
 * experts, each run on the tokens routed to it (as the eager HF code does). h [N, D], router [E, D].
 */
export function moeMlp(h: Float64Array, N: number, D: number, router: Float32Array, s: MoeSpec, expert: (e: number) => { gate: Float32Array; up: Float32Array; down: Float32Array }): { out: Float64Array; experts: Int32Array; weights: Float64Array } {
  const { numExperts: E, topK: k, expertWidth: I } = s;
  const logits = linear(h, router, N, D, E); // [N, E]
  const experts = new Int32Array(N * k);
  const weights = new Float64Array(N * k);
  for (let n = 0; n < N; n++) {
    const row = logits.subarray(n * E, (n + 1) * E);
    const max = Math.max(...row);
    const p = Array.from(row, (v) => Math.exp(v - max));
    const sum = p.reduce((a, b) => a + b, 0);
    const order = p.map((v, e) => [v / sum, e] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k);
    const norm = s.normTopK ? order.reduce((a, [v]) => a + v, 0) : 1;
    order.forEach(([v, e], j) => {
      experts[n * k + j] = e;
      weights[n * k + j] = v / norm;
    });
  }
  const out = new Float64Array(N * D);
  for (let e = 0; e < E; e++) {
    const rows: number[] = [];
    const w: number[] = [];
    for (let i = 0; i < N * k; i++) if (experts[i] === e) { rows.push(Math.floor(i / k)); w.push(weights[i]); }
    if (!rows.length) continue;
    const xe = new Float64Array(rows.length * D);
    rows.forEach((n, r) => xe.set(h.subarray(n * D, (n + 1) * D), r * D));
    const { gate, up, down } = expert(e);
    const ye = denseMlp(xe, rows.length, D, I, gate, up, down); // [M, D]
    rows.forEach((n, r) => {
      for (let i = 0; i < D; i++) out[n * D + i] += w[r] * ye[r * D + i];
    });
  }
  return { out, experts, weights };
}

/** One Qwen3(Moe)DecoderLayer: x = x + attn(norm(x)); x = x + mlp(norm(x)). x [B, T, D], in place. */
function decoderLayer(w: WeightSource, c: Qwen3Config | Qwen3MoeConfig, l: number, x: Float64Array, B: number, T: number, mask: number[][], positions: number[][], mlp: Mlp): void {
  const p = `model.layers.${l}.`;
  const D = c.hiddenSize, H = c.numHeads, KV = c.numKvHeads, hd = c.headDim;
  const N = B * T;

  // --- self-attention block
  const h = rmsNorm(x, w.readF32(p + 'input_layernorm.weight'), D, c.rmsNormEps); // [N, D]
  const q = linear(h, w.readF32(p + 'self_attn.q_proj.weight'), N, D, H * hd); //  [N, H*hd] = [B, T, H, hd]
  const k = linear(h, w.readF32(p + 'self_attn.k_proj.weight'), N, D, KV * hd); // [B, T, KV, hd]
  const v = linear(h, w.readF32(p + 'self_attn.v_proj.weight'), N, D, KV * hd); // [B, T, KV, hd]
  const qn = rmsNorm(q, w.readF32(p + 'self_attn.q_norm.weight'), hd, c.rmsNormEps); // per head over hd
  const kn = rmsNorm(k, w.readF32(p + 'self_attn.k_norm.weight'), hd, c.rmsNormEps);
  applyRope(qn, B, T, H, hd, positions, c.ropeTheta);
  applyRope(kn, B, T, KV, hd, positions, c.ropeTheta);
  const attn = attention(qn, kn, v, B, T, H, KV, hd, mask); // [B, T, H*hd]
  const o = linear(attn, w.readF32(p + 'self_attn.o_proj.weight'), N, H * hd, D); // [N, D]
  for (let i = 0; i < x.length; i++) x[i] += o[i];

  // --- MLP block (dense or mixture of experts)
  const h2 = rmsNorm(x, w.readF32(p + 'post_attention_layernorm.weight'), D, c.rmsNormEps); // [N, D]
  const down = mlp(h2, N); //                                                                   [N, D]
  for (let i = 0; i < x.length; i++) x[i] += down[i];
}

/** RMSNorm over the last `n` elements of each group: y = x / sqrt(mean(x^2) + eps) * weight. */
function rmsNorm(x: Float64Array, weight: Float32Array, n: number, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let g = 0; g < x.length; g += n) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[g + i] * x[g + i];
    const inv = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) y[g + i] = x[g + i] * inv * weight[i];
  }
  return y;
}

/** y = x W^T with HF's Linear weight W [out, in]: x [N, in] -> y [N, out]. */
export function linear(x: Float64Array, W: Float32Array, N: number, inDim: number, outDim: number): Float64Array {
  const y = new Float64Array(N * outDim);
  for (let r = 0; r < N; r++)
    for (let o = 0; o < outDim; o++) {
      let s = 0;
      for (let i = 0; i < inDim; i++) s += x[r * inDim + i] * W[o * inDim + i];
      y[r * outDim + o] = s;
    }
  return y;
}

/**
 * Rotate-half RoPE in place on a [B, T, nHeads, hd] tensor: x * cos + rotate_half(x) * sin with
 * rotate_half(x) = cat(-x2, x1), inv_freq[j] = 1 / theta^(2j / rd), angle = pos * inv_freq[j],
 * cos/sin duplicated over both halves. Tables are rounded to float32 as HF computes them. Partial RoPE (Qwen3.5):
 * only the first rd dims of each head rotate, dims rd..hd-1 pass.
 */
export function applyRope(x: Float64Array, B: number, T: number, nHeads: number, hd: number, positions: number[][], theta: number, rd = hd): void {
  const half = rd / 2;
  const f = Math.fround;
  const invFreq = Array.from({ length: half }, (_, j) => f(1 / f(theta ** f((2 * j) / rd))));
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++) {
      const pos = positions[b][t];
      for (let j = 0; j < half; j++) {
        const angle = f(pos * invFreq[j]);
        const cos = f(Math.cos(angle)), sin = f(Math.sin(angle));
        for (let hh = 0; hh < nHeads; hh++) {
          const base = ((b * T + t) * nHeads + hh) * hd;
          const x1 = x[base + j], x2 = x[base + j + half];
          x[base + j] = x1 * cos - x2 * sin; //        first half:  x1 cos + (-x2) sin
          x[base + j + half] = x2 * cos + x1 * sin; // second half: x2 cos + x1 sin
        }
      }
    }
}

/**
 * Grouped-query scaled dot-product attention, causal + key padding mask.
 * q [B, T, H, hd], k/v [B, T, KV, hd] -> out [B, T, H*hd]; query head h reads kv head floor(h / (H / KV)).
 * A query with no visible key (a left pad) gets zeros: its value is meaningless but stays finite.
 */
export function attention(q: Float64Array, k: Float64Array, v: Float64Array, B: number, T: number, H: number, KV: number, hd: number, mask: number[][]): Float64Array {
  const out = new Float64Array(B * T * H * hd);
  const group = H / KV;
  const scale = 1 / Math.sqrt(hd);
  const scores = new Float64Array(T);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / group);
      for (let t = 0; t < T; t++) {
        const qo = ((b * T + t) * H + h) * hd;
        let max = -Infinity;
        for (let s = 0; s <= t; s++) {
          if (!mask[b][s]) { scores[s] = -Infinity; continue; }
          const ko = ((b * T + s) * KV + kvh) * hd;
          let dot = 0;
          for (let i = 0; i < hd; i++) dot += q[qo + i] * k[ko + i];
          scores[s] = dot * scale;
          if (scores[s] > max) max = scores[s];
        }
        if (max === -Infinity) continue; // no visible key
        let sum = 0;
        for (let s = 0; s <= t; s++) sum += scores[s] = Math.exp(scores[s] - max);
        for (let s = 0; s <= t; s++) {
          if (scores[s] === 0) continue;
          const wgt = scores[s] / sum;
          const vo = ((b * T + s) * KV + kvh) * hd;
          for (let i = 0; i < hd; i++) out[qo + i] += wgt * v[vo + i];
        }
      }
    }
  return out;
}
