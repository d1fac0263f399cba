/**
 * The Qwen3 decoder as an ONNX graph, up to a target layer, exactly as Hugging Face's modeling_qwen3.py
 * computes it in float32, with an optional fused TopK SAE encoder on the residual stream.
 *
 *   input_ids, attention_mask: int64 [B, T]
 *   resid_post:   float [B, T, D]   raw residual stream after decoder layer L (before model.norm)
 *   topk_values:  float [B, T, k]   (SAE fused only) relu of the k largest pre-activations
 *   topk_indices: int64 [B, T, k]   (SAE fused only) their feature ids
 *
 * Rows are flattened to N = B*T for every MatMul. q/k/v share one MatMul, gate/up another. Weights are
 * written transposed to [in, out] into an external-data file. Operators are those onnxruntime 1.30 runs fast
 * on CPU: ai.onnx opset 23 RMSNormalization, RotaryEmbedding and Attention (bool mask = causal AND
 * key-is-real, which zeroes fully masked rows and keeps pad positions finite).
 */
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatError } from '../errors.js';
import type { WeightSource } from './checkpoint.js';
import { ExternalDataFile, GraphBuilder, TensorDataType, attr } from './onnx/graph-builder.js';
import type { Qwen3Config } from './qwen3-config.js';
import { f32ToF16 } from './dtypes.js';
import type { TopKSae } from './sae/types.js';

export const GRAPH_BUILDER_VERSION = 3;

/**
 * How the big matrices are stored and multiplied. 'f32': float32 weights, everything in float32 (CPU).
 * 'f16': float16 weights and float16 MatMuls/Gemm (half the memory; tensor cores on CUDA), activations cast to
 * float16 at each projection and back; RMSNorm, RoPE, attention, the residual stream and the SAE's TopK stay float32.
 */
export type WeightDtype = 'f32' | 'f16';

export interface Qwen3GraphSpec {
  config: Qwen3Config;
  /** 0-based decoder layer whose output residual the graph returns */
  layer: number;
  weights: WeightSource;
  sae?: TopKSae | null;
  /** default 'f32' */
  weightDtype?: WeightDtype;
}

export interface BuiltGraph {
  modelPath: string;
  weightsPath: string;
  inputs: string[];
  outputs: string[];
}

export const MODEL_FILE = 'model.onnx';
export const WEIGHTS_FILE = 'weights.bin';

/** Write model.onnx + weights.bin for `spec` into `dir` (which must exist). */
export function buildQwen3Graph(spec: Qwen3GraphSpec, dir: string): BuiltGraph {
  const { config: c, layer, sae } = spec;
  if (sae && sae.dModel !== c.hiddenSize)
    throw formatError(`${sae.source}: SAE d_model ${sae.dModel} does not match the model's hidden_size ${c.hiddenSize}`);
  const weightsPath = join(dir, WEIGHTS_FILE);
  const ext = new ExternalDataFile(weightsPath);
  try {
    const g = new GraphBuilder(ext);
    const outputs = emitQwen3(g, spec);
    const modelPath = join(dir, MODEL_FILE);
    const bytes = g.encode([{ domain: '', version: 23 }], { layer: String(layer), builder_version: String(GRAPH_BUILDER_VERSION) }, 'qwen3_residual');
    writeFileSync(modelPath, bytes);
    return { modelPath, weightsPath, inputs: ['input_ids', 'attention_mask'], outputs };
  } finally {
    ext.close();
  }
}

function emitQwen3(g: GraphBuilder, spec: Qwen3GraphSpec): string[] {
  const { config: c, layer, weights, sae } = spec;
  const D = c.hiddenSize;
  const ids = g.input('input_ids', TensorDataType.INT64, ['batch', 'seq']);
  const mask = g.input('attention_mask', TensorDataType.INT64, ['batch', 'seq']);

  // Shapes: bt = [B, T]; reshaping back to [B, T, X] concatenates X onto it.
  const bt = g.op('Shape', [ids]);
  const shapeBTD = g.op('Concat', [bt, g.constI64('D', [D])], { axis: attr.int(0) });

  // Embedding: x [N, D]. Pads read token 0 (any pad id works, even one outside a small vocabulary).
  // A bf16 table is gathered as bf16 then cast (half the memory of an f32 table).
  const flatIds = g.op('Reshape', [g.op('Mul', [ids, mask]), g.constI64('minus1', [-1])]); //         [N]
  const dt = spec.weightDtype ?? 'f32';
  let x = embedding(g, weights, flatIds, c, dt); //                                                          [N, D]

  // Positions: cumsum(mask) - 1, clamped at 0, so left-padded rows get the positions they have alone.
  const pos = g.op('Max', [g.op('Sub', [g.op('CumSum', [mask, g.constI64('axis1', [1], [])]), g.constI64('one', [1], [])]), g.constI64('zero', [0], [])]); // [B, T]
  const rope = ropeTables(g, pos, c); //                                                                  cos, sin [B, T, hd/2]
  const attnMask = causalPaddingMask(g, ids, mask); //                                                   bool [B, 1, T, T]

  for (let l = 0; l <= layer; l++) x = decoderLayer(g, weights, c, l, x, { bt, rope, attnMask, dt });

  const outputs = ['resid_post'];
  g.node('Reshape', [x, shapeBTD], { outputs: ['resid_post'] }); //                                       [B, T, D]
  g.output('resid_post', TensorDataType.FLOAT, ['batch', 'seq', D]);
  if (sae) {
    saeTopK(g, sae, x, bt, dt);
    outputs.push('topk_values', 'topk_indices');
  }
  return outputs;
}

interface Shared {
  bt: string;
  rope: { cos: string; sin: string };
  attnMask: string;
  dt: WeightDtype;
}

/**
 * x [N, in] @ wT [in, out] -> [N, out] float32. With f16 weights: Cast(x, f16) @ wT(f16), Cast back to f32.
 * `wT` is already transposed to [in, out].
 */
function linear(g: GraphBuilder, x: string, name: string, wT: Float32Array, inDim: number, outDim: number, dt: WeightDtype): string {
  if (dt === 'f32') return g.op('MatMul', [x, g.weight(name, TensorDataType.FLOAT, [inDim, outDim], wT)]);
  const xh = g.op('Cast', [x], { to: attr.int(TensorDataType.FLOAT16) });
  const y = g.op('MatMul', [xh, g.weight(name, TensorDataType.FLOAT16, [inDim, outDim], f32ToF16(wT))]);
  return g.op('Cast', [y], { to: attr.int(TensorDataType.FLOAT) });
}

/** One Qwen3DecoderLayer: x [N, D] -> x [N, D]. */
function decoderLayer(g: GraphBuilder, w: WeightSource, c: Qwen3Config, l: number, x: string, s: Shared): string {
  const p = `model.layers.${l}.`;
  const h = rmsNorm(g, x, g.weight(p + 'input_layernorm.weight', TensorDataType.FLOAT, [c.hiddenSize], w.readF32(p + 'input_layernorm.weight')), c.rmsNormEps);
  const attn = attention(g, w, c, l, h, s); //                                                            [N, D]
  const x1 = g.op('Add', [x, attn]);
  const h2 = rmsNorm(g, x1, g.weight(p + 'post_attention_layernorm.weight', TensorDataType.FLOAT, [c.hiddenSize], w.readF32(p + 'post_attention_layernorm.weight')), c.rmsNormEps);
  return g.op('Add', [x1, mlp(g, w, c, l, h2, s.dt)]);
}

/** RMSNorm in fp32: x * rsqrt(mean(x^2, -1) + eps) * w. */
function rmsNorm(g: GraphBuilder, x: string, weight: string, eps: number): string {
  return g.op('RMSNormalization', [x, weight], { axis: attr.int(-1), epsilon: attr.float(eps), stash_type: attr.int(1) });
}

/** Self-attention: h [N, D] -> o_proj(attn) [N, D]. */
function attention(g: GraphBuilder, w: WeightSource, c: Qwen3Config, l: number, h: string, s: Shared): string {
  const p = `model.layers.${l}.self_attn.`;
  const { numHeads: H, numKvHeads: KV, headDim: hd } = c;
  const wqkv = fusedTransposed(w, [p + 'q_proj.weight', p + 'k_proj.weight', p + 'v_proj.weight'], c.hiddenSize);
  const qkv = linear(g, h, p + 'qkv_proj.weightT', wqkv, c.hiddenSize, (H + 2 * KV) * hd, s.dt); //     [N, (H+2KV)*hd]
  const [q, k, v] = g.node('Split', [qkv, g.constI64('qkv_split', [H * hd, KV * hd, KV * hd])], { outputs: 3, attrs: { axis: attr.int(1) } });

  // Per-head RMSNorm over head_dim, then RoPE, on [B, T, heads*hd] (the 3D layout Attention reads).
  const headNorm = (t: string, heads: number, name: string) => {
    const perHead = g.op('Reshape', [t, g.constI64(`${name}_heads`, [0, heads, hd])]); //           [N, heads, hd]
    const normed = rmsNorm(g, perHead, g.weight(p + name + '.weight', TensorDataType.FLOAT, [hd], w.readF32(p + name + '.weight')), c.rmsNormEps);
    const bth = g.op('Concat', [s.bt, g.constI64(`${name}_width`, [heads * hd])], { axis: attr.int(0) });
    return g.op('Reshape', [normed, bth]); //                                                             [B, T, heads*hd]
  };
  const rotary = (t: string, heads: number) =>
    g.op('RotaryEmbedding', [t, s.rope.cos, s.rope.sin], { num_heads: attr.int(heads), interleaved: attr.int(0) });
  const qr = rotary(headNorm(q, H, 'q_norm'), H); //                                                      [B, T, H*hd]
  const kr = rotary(headNorm(k, KV, 'k_norm'), KV); //                                                    [B, T, KV*hd]
  const v3 = g.op('Reshape', [v, g.op('Concat', [s.bt, g.constI64('v_width', [KV * hd])], { axis: attr.int(0) })]); // [B, T, KV*hd]

  const y = g.op('Attention', [qr, kr, v3, s.attnMask], {
    q_num_heads: attr.int(H),
    kv_num_heads: attr.int(KV),
    scale: attr.float(1 / Math.sqrt(hd)),
    is_causal: attr.int(0),
  }); //                                                                                                   [B, T, H*hd]
  const y2 = g.op('Reshape', [y, g.constI64('attn_flat', [-1, H * hd])]); //                             [N, H*hd]
  const wo = transposed(w.readF32(p + 'o_proj.weight'), c.hiddenSize, H * hd);
  return linear(g, y2, p + 'o_proj.weightT', wo, H * hd, c.hiddenSize, s.dt); //                            [N, D]
}

/** SiLU-gated MLP: down(silu(gate(h)) * up(h)), h [N, D] -> [N, D]. */
function mlp(g: GraphBuilder, w: WeightSource, c: Qwen3Config, l: number, h: string, dt: WeightDtype): string {
  const p = `model.layers.${l}.mlp.`;
  const F = c.intermediateSize;
  const wgu = fusedTransposed(w, [p + 'gate_proj.weight', p + 'up_proj.weight'], c.hiddenSize);
  const gu = linear(g, h, p + 'gate_up_proj.weightT', wgu, c.hiddenSize, 2 * F, dt); //                    [N, 2F]
  const [gate, up] = g.node('Split', [gu, g.constI64('gate_up_split', [F, F])], { outputs: 2, attrs: { axis: attr.int(1) } });
  const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]); //                        [N, F]
  const wd = transposed(w.readF32(p + 'down_proj.weight'), c.hiddenSize, F);
  return linear(g, act, p + 'down_proj.weightT', wd, F, c.hiddenSize, dt); //                               [N, D]
}

/** cos/sin of pos * inv_freq, inv_freq = 1 / theta^(arange(0, hd, 2) / hd) in float32: [B, T, hd/2] each. */
function ropeTables(g: GraphBuilder, pos: string, c: Qwen3Config): { cos: string; sin: string } {
  const half = c.headDim / 2;
  const invFreq = new Float32Array(half);
  // torch: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), the power in float32 too
  for (let i = 0; i < half; i++) invFreq[i] = 1 / Math.fround(c.ropeTheta ** Math.fround((2 * i) / c.headDim));
  const posF = g.op('Unsqueeze', [g.op('Cast', [pos], { to: attr.int(TensorDataType.FLOAT) }), g.constI64('axis_last', [-1])]); // [B, T, 1]
  const freqs = g.op('Mul', [posF, g.constF32('inv_freq', invFreq)]); //                                  [B, T, hd/2]
  return { cos: g.op('Cos', [freqs]), sin: g.op('Sin', [freqs]) };
}

/** bool [B, 1, T, T]: query i may attend key j iff j <= i and key j is a real token. */
function causalPaddingMask(g: GraphBuilder, ids: string, mask: string): string {
  const T = g.op('Squeeze', [g.op('Shape', [ids], { start: attr.int(1), end: attr.int(2) })]); //        scalar
  const r = g.op('Range', [g.constI64('r0', [0], []), T, g.constI64('r1', [1], [])]); //                    [T]
  const causal = g.op('GreaterOrEqual', [g.op('Unsqueeze', [r, g.constI64('ax1', [1])]), g.op('Unsqueeze', [r, g.constI64('ax0', [0])])]); // [T, T]
  const keyReal = g.op('Unsqueeze', [g.op('Cast', [mask], { to: attr.int(TensorDataType.BOOL) }), g.constI64('ax12', [1, 2])]); // [B, 1, 1, T]
  return g.op('And', [causal, keyReal]); //                                                                [B, 1, T, T]
}

/** pre = (x - inputBias) @ wEnc^T + bEnc; top-k; relu. x [N, D] -> topk_values/topk_indices [B, T, k]. */
function saeTopK(g: GraphBuilder, sae: TopKSae, x: string, bt: string, dt: WeightDtype): void {
  const { dModel, dSae, k } = sae;
  if (k > dSae) throw formatError(`${sae.source}: k ${k} exceeds the SAE width ${dSae}`);
  const xin = sae.inputBias ? g.op('Sub', [x, g.weight('sae.input_bias', TensorDataType.FLOAT, [dModel], sae.inputBias)]) : x;
  const pre =
    dt === 'f32'
      ? g.op('Gemm', [xin, g.weight('sae.w_enc', TensorDataType.FLOAT, [dSae, dModel], sae.wEnc), g.weight('sae.b_enc', TensorDataType.FLOAT, [dSae], sae.bEnc)], { transB: attr.int(1) }) // [N, dSae]
      : g.op('Add', [
          g.op('Cast', [g.op('Gemm', [g.op('Cast', [xin], { to: attr.int(TensorDataType.FLOAT16) }), g.weight('sae.w_enc', TensorDataType.FLOAT16, [dSae, dModel], f32ToF16(sae.wEnc))], { transB: attr.int(1) })], { to: attr.int(TensorDataType.FLOAT) }),
          g.weight('sae.b_enc', TensorDataType.FLOAT, [dSae], sae.bEnc),
        ]); //                                                                                                  [N, dSae], TopK in f32
  const block = topKBlockSize(dSae, k);
  const [vals, idx] = block ? blockedTopK(g, pre, dSae, k, block) : topK(g, pre, k, { largest: true }); // [N, k]
  const shapeBTK = g.op('Concat', [bt, g.constI64('sae_k_dim', [k])], { axis: attr.int(0) });
  g.node('Reshape', [g.op('Relu', [vals]), shapeBTK], { outputs: ['topk_values'] });
  g.node('Reshape', [idx, shapeBTK], { outputs: ['topk_indices'] });
  g.output('topk_values', TensorDataType.FLOAT, ['batch', 'seq', k]);
  g.output('topk_indices', TensorDataType.INT64, ['batch', 'seq', k]);
}

/** Sorted TopK along the last axis; onnxruntime breaks ties by the lower index. */
function topK(g: GraphBuilder, t: string, k: number, o: { largest: boolean }): [string, string] {
  const [v, i] = g.node('TopK', [t, g.constI64(`topk_${k}`, [k])], { outputs: 2, attrs: { axis: attr.int(-1), largest: attr.int(o.largest ? 1 : 0), sorted: attr.int(1) } });
  return [v, i];
}

/**
 * Block size for blockedTopK, or 0 for a plain TopK. onnxruntime's TopK costs about 0.7 ns per element
 * (a compare against a heap) and reads the whole [N, dSae] pre-activation again; the blocked form wins from
 * dSae >= 512 k (measured 2 threads, N = 1024: 65536/50 50 -> 26 ms, 131072/50 97 -> 42 ms, 16384/50 11 -> 12 ms).
 * Blocks of about sqrt(dSae / k) (rounded up to a power of two) balance the two small TopKs.
 */
export function topKBlockSize(dSae: number, k: number): number {
  if (dSae < 512 * k) return 0;
  const b = 2 ** Math.ceil(Math.log2(Math.sqrt(dSae / k)));
  return dSae % b === 0 && dSae / b >= k ? b : 0;
}

/**
 * Exactly TopK(pre, k) (same values, same indices, same order, ties to the lower index) in two small TopKs:
 * cut the dSae axis into blocks of S, take the k blocks with the largest maxima, TopK over their k*S values.
 * Why nothing is lost: order elements by (value desc, index asc) as TopK does. A block's best element ranks
 * no lower than any element of the block, and blocks are contiguous, so ordering blocks by (max desc, block
 * index asc) orders their best elements. If element e is in the top k, the best element of e's block is too,
 * and at most k - 1 other blocks have a better best element: e's block is among the k chosen. The chosen
 * blocks are put back in ascending order so that, among candidates, position order is index order and the
 * final TopK breaks ties exactly as the one over all of pre would. Values are gathered, never recomputed.
 * Assumes no NaN in pre (ReduceMax and TopK order NaN differently); the residual stream stays finite.
 */
export function blockedTopK(g: GraphBuilder, pre: string, dSae: number, k: number, S: number): [string, string] {
  const C = dSae / S;
  const blocks = g.op('Reshape', [pre, g.constI64('sae_blocks', [0, C, S])]); //                       [N, C, S]
  const blockMax = g.op('ReduceMax', [blocks, g.constI64('sae_last_axis', [-1])], { keepdims: attr.int(0) }); // [N, C]
  const chosen = topK(g, topK(g, blockMax, k, { largest: true })[1], k, { largest: false })[0]; //        [N, k] block ids, ascending
  const cand = g.op('GatherND', [blocks, g.op('Unsqueeze', [chosen, g.constI64('sae_last_axis_i', [-1])])], { batch_dims: attr.int(1) }); // [N, k, S]
  const [vals, pos] = topK(g, g.op('Reshape', [cand, g.constI64('sae_cand', [0, k * S])]), k, { largest: true }); // [N, k], pos in [0, k*S)
  const s = g.constI64('sae_block_size', [S], []);
  const block = g.op('GatherElements', [chosen, g.op('Div', [pos, s])], { axis: attr.int(1) }); //      [N, k]
  return [vals, g.op('Add', [g.op('Mul', [block, s]), g.op('Mod', [pos, s])])]; //                       [N, k] feature ids
}

// ---------------------------------------------------------------- weights

function embedding(g: GraphBuilder, w: WeightSource, flatIds: string, c: Qwen3Config, dt: WeightDtype): string {
  const name = 'model.embed_tokens.weight';
  const info = w.info(name);
  if (dt === 'f16') {
    const table = g.weight(name, TensorDataType.FLOAT16, [c.vocabSize, c.hiddenSize], f32ToF16(w.readF32(name)));
    return g.op('Cast', [g.op('Gather', [table, flatIds], { axis: attr.int(0) })], { to: attr.int(TensorDataType.FLOAT) });
  }
  if (info.dtype === 'BF16') {
    const table = g.weight(name, TensorDataType.BFLOAT16, [c.vocabSize, c.hiddenSize], readRaw(info.file, info.offset, info.byteLength));
    return g.op('Cast', [g.op('Gather', [table, flatIds], { axis: attr.int(0) })], { to: attr.int(TensorDataType.FLOAT) });
  }
  const table = g.weight(name, TensorDataType.FLOAT, [c.vocabSize, c.hiddenSize], w.readF32(name));
  return g.op('Gather', [table, flatIds], { axis: attr.int(0) });
}

function readRaw(file: string, offset: number, length: number): Uint8Array {
  const buf = new Uint8Array(length);
  const fd = openSync(file, 'r');
  try {
    let done = 0;
    while (done < length) {
      const n = readSync(fd, buf, done, length - done, offset + done);
      if (n === 0) throw formatError(`${file}: unexpected end of file at byte ${offset + done}`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return buf;
}

/** [rows, cols] row-major -> [cols, rows]. */
export function transposed(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  transposeInto(src, rows, cols, out, rows, 0);
  return out;
}

/** Stack [out_i, inDim] matrices along rows, then transpose: [inDim, sum(out_i)]. */
function fusedTransposed(w: WeightSource, names: string[], inDim: number): Float32Array {
  const mats = names.map((n) => w.readF32(n));
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
function transposeInto(src: Float32Array, rows: number, cols: number, dst: Float32Array, dstCols: number, colOffset: number): void {
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
