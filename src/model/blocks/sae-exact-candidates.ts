/**
 * The exact-candidate TopK SAE encoder: a quantized pre-activation only chooses candidates; the fired set and
 * the values are float32 `x @ W_enc^T + b_enc` recomputed for the candidates.
 *
 *   q      = int8(x) @ int8(W_enc)^T + b_enc            [N, dSae]  cheap, off by at most e per entry
 *   C      = top (k + m) of q, put in ascending id order  [N, k+m]
 *   pre_C  = x @ W_enc[C]^T + b_enc[C]   (float32)      [N, k+m]   Gather of W_enc rows, a small batched MatMul,
 *                                                                   128 tokens at a time (a Loop)
 *   codes  = relu(topk(pre_C, k))                        [N, k]
 *
 * When is this the float32 encoder? Let e bound |q_f - pre_f| for every feature f of a token, q_(j) be the j-th
 * largest q and c = k + m. Every feature g outside C has pre_g <= q_g + e <= q_(c+1) + e. So if
 *   q_(c+1) + e < max(pre_(k), 0)   with pre_(k) the k-th largest float32 value among the candidates (computed),
 * no feature outside C can enter the float32 top k (or, when fewer than k candidates are positive, fire at all),
 * and the top k of pre_C is the float32 encoder's. `exact` is that condition. It holds in particular whenever
 * q_(k) - q_(c+1) > 2e (the k features with the largest q all have pre >= q_(k) - e > q_(c+1) + e), the form the
 * tests state; it is sharper because it uses the float32 values it has already computed.
 * Ties are broken by the lower feature id, as onnxruntime's TopK over all of pre does, because the candidates
 * are sorted by id before the final TopK.
 *
 * The bound e, per token (x already centred by inputBias). With w_hat = w + dw the dequantized weights and x_hat =
 * x + dx the activations as the kernel quantized them, x_hat . w_hat - x . w = x . dw_f + dx . w_hat_f exactly, so
 * by Cauchy-Schwarz, for every feature f:
 *   |q_f - pre_f| <= ||x||_2 max_f ||dw_f||_2 + ||dx||_2 max_f ||w_hat_f||_2   (+ float32 rounding of both sides)
 * ||dw_f|| is known at build time. ||dx|| is computed in the graph: for DynamicQuantizeMatMul by repeating its
 * activation quantization (DynamicQuantizeLinear over the whole [N, D] tensor, then DequantizeLinear); for
 * MatMulNBits accuracy 4 (int8 per row and block, scale max|block| / 127) as sqrt(D) max|x_row| / 254. Rounding:
 * (D + 4) 2^-23 ||x||_2 max_f ||w_f||_2 + 2^-21 max|b_enc| (loose, and small next to the rest).
 */
import { formatError } from '../../errors.js';
import { GraphBuilder, TensorDataType, attr } from '../onnx/graph-builder.js';
import { type BlockedUint8, LOW_BITS, type PerChannelInt8, blockedLowPart, quantizeBlocked, quantizePerChannel, splitValue } from '../quantize.js';
import type { TopKSae } from '../sae/types.js';
import { INT8_GRAPH_CHOICES, NBITS_BLOCK, int8LinearTransB, int8WeightLevels, type Int8Kernel, nbits8MatMulBlocked } from './int8.js';

export interface ExactCandidateOutputs {
  /** float [N, k]: relu of the k largest float32 pre-activations among the candidates, descending */
  values: string;
  /** int64 [N, k]: their feature ids */
  indices: string;
  /** bool [N]: the margin condition holds, so values/indices equal the float32 encoder's */
  exact: string;
  /** float [N, dSae]: the quantized pre-activation q (for tests) */
  quantized: string;
  /** float [N, 1]: the bound e on |q - pre| */
  bound: string;
}

/** Constants of the bound that depend on the weights only. */
export interface QuantBoundTerms {
  /** max_f ||w_f - w_hat_f||_2 */
  dwMax: number;
  /** max_f ||w_hat_f||_2 */
  wHatMax: number;
  /** max_f ||w_f||_2 */
  wMax: number;
  /** max_f |b_f| */
  bMax: number;
}

export function quantBoundTerms(sae: TopKSae, kernel: Int8Kernel): QuantBoundTerms {
  const { dModel: D, dSae: S, wEnc, bEnc } = sae;
  const deq = kernel === 'nbits8' ? blockedDequantizer(quantizeBlocked(wEnc, S, D, NBITS_BLOCK)) : perChannelDequantizer(quantizePerChannel(wEnc, S, D, int8WeightLevels()));
  let dwMax = 0, wHatMax = 0, wMax = 0, bMax = 0;
  for (let f = 0; f < S; f++) {
    let dw2 = 0, wh2 = 0, w2 = 0;
    for (let i = 0; i < D; i++) {
      const w = wEnc[f * D + i], wh = deq(f, i);
      dw2 += (w - wh) ** 2;
      wh2 += wh * wh;
      w2 += w * w;
    }
    dwMax = Math.max(dwMax, Math.sqrt(dw2));
    wHatMax = Math.max(wHatMax, Math.sqrt(wh2));
    wMax = Math.max(wMax, Math.sqrt(w2));
    bMax = Math.max(bMax, Math.abs(bEnc[f]));
  }
  return { dwMax, wHatMax, wMax, bMax };
}

function perChannelDequantizer(p: PerChannelInt8): (f: number, i: number) => number {
  return (f, i) => p.q[f * p.cols + i] * p.scale[f];
}

function blockedDequantizer(p: BlockedUint8): (f: number, i: number) => number {
  return (f, i) => {
    const b = Math.floor(i / p.block);
    return (p.q[(f * p.blocks + b) * p.block + (i % p.block)] - 128) * p.scale[f * p.blocks + b];
  };
}

/** True when every value of `a` is exactly a bfloat16 (low 16 bits zero): the table can be stored as bf16 losslessly. */
export function isExactlyBf16(a: Float32Array): boolean {
  const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
  for (let i = 0; i < u.length; i++) if (u[i] & 0xffff) return false;
  return true;
}

/**
 * Emit the encoder for x [N, D] (already centred by the SAE's inputBias). `m` extra candidates beyond k.
 * `topK(t, k)` is the caller's TopK (plain or blocked; both are exact).
 */
export function emitExactCandidateTopK(
  g: GraphBuilder,
  sae: TopKSae,
  x: string,
  o: { m: number; kernel: Int8Kernel; topK: (t: string, k: number, width: number) => [string, string] },
): ExactCandidateOutputs {
  const { dModel: D, dSae: S, k, wEnc, bEnc } = sae;
  if (k > S) throw formatError(`${sae.source}: k ${k} exceeds the SAE width ${S}`);
  const c = Math.min(S, k + o.m); //                                                                    candidates
  const bias = g.weight('sae.b_enc', TensorDataType.FLOAT, [S], bEnc);
  // the quantized pre-activation; with MatMulNBits its int8 matrix is also the high part of the rows table below
  const blocked = o.kernel === 'nbits8' ? quantizeBlocked(wEnc, S, D, NBITS_BLOCK) : null;
  const nb = blocked ? nbits8MatMulBlocked(g, x, 'sae.w_enc', blocked, { name: 'sae.b_enc_q', data: bEnc }) : null;
  const q = nb ? nb.y : int8LinearTransB(g, x, 'sae.w_enc', wEnc, D, S, o.kernel, { name: 'sae.b_enc_q', data: bEnc }); // [N, S]

  // candidates: top c (+1 for the margin) of q, then in ascending id order
  const [qv, qi] = o.topK(q, Math.min(S, c + 1), S); //                                                 [N, c(+1)]
  const candDesc = g.op('Slice', [qi, g.constI64('sae_c0', [0]), g.constI64('sae_c1', [c]), g.constI64('sae_ax1', [1])]); // [N, c]
  const cand = g.node('TopK', [candDesc, g.constI64('sae_c', [c])], { outputs: 2, attrs: { axis: attr.int(-1), largest: attr.int(0), sorted: attr.int(1) } })[0]; // [N, c] ascending

  // float32 recomputation for the candidates, W_enc rows stored as (see rowsTable):
  //   bf16 when every weight is exactly a bfloat16 (lossless, 2 bytes); else, with MatMulNBits, a 24-bit fixed point
  //   sharing its int8 matrix (+ 2 bytes); else float32 (4 bytes)
  const rows = rowsTable(g, sae, blocked, nb);
  const dots = candidateDots(g, rows, x, D, cand, c); //                                                      [N, c]
  const pre = g.op('Add', [dots, g.op('Gather', [bias, cand], { axis: attr.int(0) })]); //                 [N, c]
  const [vals, pos] = g.node('TopK', [pre, g.constI64('sae_k', [k])], { outputs: 2, attrs: { axis: attr.int(-1), largest: attr.int(1), sorted: attr.int(1) } }); // [N, k]
  const indices = g.op('GatherElements', [cand, pos], { axis: attr.int(1) }); //                          [N, k]

  // the margin condition
  const t = quantBoundTerms(sae, o.kernel);
  const recErr = rows.kind === 'split' ? splitErrorMax(wEnc, blocked!, rows.loData) : 0; //          max_f ||w_f - w'_f||
  const norm = (v: string) => g.op('Sqrt', [g.op('ReduceSumSquare', [v, g.constI64('sae_bd_ax', [-1])], { keepdims: attr.int(1) })]); // [N, 1]
  const xNorm = norm(x);
  let dxNorm: string;
  if (o.kernel === 'dqmm') {
    const [xq, xs, xzp] = g.node('DynamicQuantizeLinear', [x], { outputs: 3 });
    dxNorm = norm(g.op('Sub', [g.op('DequantizeLinear', [xq, xs, xzp]), x]));
  } else {
    const rowMax = g.op('ReduceMax', [g.op('Abs', [x]), g.constI64('sae_bd_ax2', [-1])], { keepdims: attr.int(1) }); // [N, 1]
    dxNorm = g.op('Mul', [rowMax, g.constF32('sae_bd_dx', [Math.sqrt(D) / 254], [])]);
  }
  const rounding = (D + 4) * 2 ** -23 * t.wMax;
  const bound = g.op('Add', [
    g.op('Add', [g.op('Mul', [xNorm, g.constF32('sae_bd_w', [t.dwMax + rounding + recErr], [])]), g.op('Mul', [dxNorm, g.constF32('sae_bd_x', [t.wHatMax], [])])]),
    g.constF32('sae_bd_b', [t.bMax * 2 ** -21], []),
  ]); //                                                                                                    [N, 1]
  let exact: string;
  if (c >= S) {
    // every feature is a candidate: always exact (true for every row; NaN rows come out false)
    const zero = g.op('Cast', [g.op('Squeeze', [g.op('Mul', [xNorm, g.constF32('sae_zero4', [0], [])]), g.constI64('sae_ax1e', [1])])], { to: attr.int(TensorDataType.BOOL) });
    exact = g.op('Not', [zero]); //                                                                      bool [N]
  } else {
    // certified iff q_(c+1) + e < max(pre_(k) over the candidates, 0): no feature outside the candidates can
    // reach the k-th float32 value (or fire at all)
    const preK = g.op('Slice', [vals, g.constI64('sae_k0', [k - 1]), g.constI64('sae_k1', [k]), g.constI64('sae_ax1b', [1])]); // [N, 1]
    const qlast = g.op('Slice', [qv, g.constI64('sae_l0', [c]), g.constI64('sae_l1', [c + 1]), g.constI64('sae_ax1c', [1])]); // [N, 1]
    const ceiling = g.op('Max', [preK, g.constF32('sae_zero3', [0], [])]);
    exact = g.op('Squeeze', [g.op('Less', [g.op('Add', [qlast, bound]), ceiling]), g.constI64('sae_ax1d', [1])]); // bool [N]
  }
  return { values: g.op('Relu', [vals]), indices, exact, quantized: q, bound };
}

/** Tokens per step of the candidate recomputation: bounds its [chunk, c, D] Gather (128 x 82 x 2048 x 4 B = 86 MB). */
export const RECOMPUTE_CHUNK = INT8_GRAPH_CHOICES.saeRecomputeChunk;

/** How the float32 recomputation reads W_enc rows. */
type RowsTable =
  | { kind: 'bf16' | 'f32'; table: string; width: number }
  | { kind: 'split'; q: string; lo: string; scale: string; loData: Int16Array; blocks: number; block: number; width: number };

/**
 * The W_enc rows the recomputation gathers. A bf16 table when that is lossless (a bf16 checkpoint widened to float32
 * on load). Otherwise, when the candidates come from MatMulNBits, a 24-bit fixed-point copy that reuses its int8
 * matrix q as the high byte: w' = scale_block ((q - 128) + lo 2^-15) with lo int16 (quantize.ts blockedLowPart),
 * |w - w'| <= scale_block (2^-16 + 2^-17) (~2^-22 of the block's largest |w|): 3 bytes per weight in all instead of 1 + 4, which
 * is what keeps a float32 SAE's served weights under 0.3x float32. The recomputed value then differs from the exact
 * float32 dot product by at most ||x|| max_f ||w_f - w'_f|| (added to the bound), the size of float32's own rounding
 * of that dot product.
 */
function rowsTable(g: GraphBuilder, sae: TopKSae, blocked: BlockedUint8 | null, nb: { q: string; scale: string } | null): RowsTable {
  const { dModel: D, dSae: S, wEnc } = sae;
  if (isExactlyBf16(wEnc)) return { kind: 'bf16', table: g.weight('sae.w_enc_rows', TensorDataType.BFLOAT16, [S, D], bf16Bits(wEnc)), width: D };
  if (!blocked || !nb) return { kind: 'f32', table: g.weight('sae.w_enc_rows', TensorDataType.FLOAT, [S, D], wEnc), width: D };
  const loData = blockedLowPart(wEnc, blocked);
  const lo = g.weight('sae.w_enc_rows.lo', TensorDataType.INT16, [S, blocked.blocks, blocked.block], loData);
  const scale = g.op('Reshape', [nb.scale, g.constI64('sae_rows_scale', [S, blocked.blocks, 1])]); //      [S, blocks, 1]
  return { kind: 'split', q: nb.q, lo, scale, loData, blocks: blocked.blocks, block: blocked.block, width: blocked.blocks * blocked.block };
}

/** max_f ||w_f - w'_f||_2 for the split table (computed exactly as the graph rebuilds w'). */
function splitErrorMax(wEnc: Float32Array, p: BlockedUint8, lo: Int16Array): number {
  let worst = 0;
  for (let r = 0; r < p.rows; r++) {
    let e2 = 0;
    for (let c = 0; c < p.cols; c++) e2 += (wEnc[r * p.cols + c] - splitValue(p, lo, r, c)) ** 2;
    worst = Math.max(worst, Math.sqrt(e2));
  }
  return worst;
}

/**
 * dots[n, j] = x[n] . W_enc[cand[n, j]] in float32: x [N, D], cand [N, c] -> [N, c]. A Loop over chunks of
 * RECOMPUTE_CHUNK tokens, so the gathered rows never exceed [chunk, c, D] (all N at once would be
 * 1024 x 82 x 2048 x 4 B = 688 MB for a 2048-wide model); x and cand are zero-padded to whole chunks first (and x to
 * the table's width: the split table's rows are whole blocks, their tail zero).
 */
function candidateDots(g: GraphBuilder, rowsT: RowsTable, x: string, D: number, cand: string, c: number): string {
  const CH = RECOMPUTE_CHUNK;
  const ch = g.constI64('sae_chunk', [CH], []);
  const n = g.op('Squeeze', [g.op('Shape', [x], { start: attr.int(0), end: attr.int(1) }), g.constI64('sae_ax0', [0])]); // scalar N
  const steps = g.op('Div', [g.op('Add', [n, g.constI64('sae_chunk_m1', [CH - 1], [])]), ch]); //            ceil(N / CH)
  const padRows = g.op('Sub', [g.op('Mul', [steps, ch]), n]); //                                            scalar
  const zero = g.constI64('sae_pad0', [0], []);
  const unsq = (v: string) => g.op('Unsqueeze', [v, g.constI64('sae_ax0b', [0])]);
  const pads = g.op('Concat', [zero, zero, padRows, zero].map(unsq), { axis: attr.int(0) }); //           [4]
  const xPads = g.op('Concat', [zero, zero, padRows, g.constI64('sae_pad_w', [rowsT.width - D], [])].map(unsq), { axis: attr.int(0) }); // [4]
  const xPad = g.op('Pad', [x, xPads]); //                                                                   [steps*CH, width]
  const cPad = g.op('Pad', [cand, pads]); //                                                                 [steps*CH, c]

  const b = g.subgraph();
  const iter = b.input(b.fresh('sae_iter'), TensorDataType.INT64, []);
  const condIn = b.input(b.fresh('sae_cond_in'), TensorDataType.BOOL, []);
  const start = b.op('Unsqueeze', [b.op('Mul', [iter, ch]), g.constI64('sae_ax0c', [0])]); //              [1]
  const end = b.op('Add', [start, g.constI64('sae_chunk_1d', [CH])]);
  const axis0 = g.constI64('sae_ax0d', [0]);
  const xs = b.op('Slice', [xPad, start, end, axis0]); //                                                     [CH, width]
  const cs = b.op('Slice', [cPad, start, end, axis0]); //                                                     [CH, c]
  const toF32 = { to: attr.int(TensorDataType.FLOAT) };
  let rows: string;
  if (rowsT.kind === 'split') {
    const hi = b.op('Sub', [b.op('Cast', [b.op('Gather', [rowsT.q, cs], { axis: attr.int(0) })], toF32), g.constF32('sae_zp', [128], [])]); // [CH, c, blocks, block]
    const lo = b.op('Mul', [b.op('Cast', [b.op('Gather', [rowsT.lo, cs], { axis: attr.int(0) })], toF32), g.constF32('sae_lo', [2 ** -LOW_BITS], [])]); // exact
    const scale = b.op('Gather', [rowsT.scale, cs], { axis: attr.int(0) }); //                                [CH, c, blocks, 1]
    rows = b.op('Reshape', [b.op('Mul', [b.op('Add', [hi, lo]), scale]), g.constI64('sae_rows_flat', [0, 0, rowsT.width])]); // [CH, c, width]
  } else {
    rows = b.op('Gather', [rowsT.table, cs], { axis: attr.int(0) }); //                                      [CH, c, D]
    if (rowsT.kind === 'bf16') rows = b.op('Cast', [rows], toF32);
  }
  const dots = b.op('Squeeze', [b.op('MatMul', [rows, b.op('Unsqueeze', [xs, g.constI64('sae_ax_last', [-1])])]), g.constI64('sae_ax_last2', [-1])]); // [CH, c]
  const [condOut] = b.node('Identity', [condIn], { outputs: ['sae_cond_out'] });
  const [dotsOut] = b.node('Identity', [dots], { outputs: ['sae_dots_out'] });
  b.output(condOut, TensorDataType.BOOL, []);
  b.output(dotsOut, TensorDataType.FLOAT, null);
  const body = b.toGraph('sae_recompute_chunk');

  const stacked = g.op('Loop', [steps, ''], { body: attr.graph(body) }); //                                [steps, CH, c]
  const flat = g.op('Reshape', [stacked, g.constI64('sae_flat_c', [-1, c])]); //                             [steps*CH, c]
  return g.op('Slice', [flat, g.constI64('sae_s0', [0]), g.op('Unsqueeze', [n, g.constI64('sae_ax0e', [0])]), g.constI64('sae_ax0f', [0])]); // [N, c]
}

function bf16Bits(a: Float32Array): Uint16Array {
  const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const out = new Uint16Array(a.length);
  for (let i = 0; i < u.length; i++) out[i] = u[i] >>> 16;
  return out;
}
