/**
 * The SAE TopK tail fused after the decoder: pre = (x - inputBias) @ wEnc^T + bEnc; top-k; relu.
 *   topk_values:  float [B, T, k]   relu of the k largest pre-activations
 *   topk_indices: int64 [B, T, k]   their feature ids
 *   sae_exact:    bool [B, T]       (int8 only) the exact-candidate margin certifies the float32 result
 */
import { formatError } from '../../errors.js';
import { GraphBuilder, TensorDataType, attr } from '../onnx/graph-builder.js';
import type { TopKSae } from '../sae/types.js';
import type { BlockContext } from './context.js';
import { emitExactCandidateTopK } from './sae-exact-candidates.js';

/** x [N, D] -> graph outputs topk_values / topk_indices [B, T, k]; returns their names. */
export function saeTopK(ctx: BlockContext, sae: TopKSae, x: string): string[] {
  const { g, bt } = ctx;
  const { dModel, dSae, k } = sae;
  if (k > dSae) throw formatError(`${sae.source}: k ${k} exceeds the SAE width ${dSae}`);
  const xin = sae.inputBias ? g.op('Sub', [x, g.weight('sae.input_bias', TensorDataType.FLOAT, [dModel], sae.inputBias)]) : x;
  const enc = ctx.precision.saeEncoder;
  if (enc.kind === 'exact-candidates') {
    const topKOf = (t: string, kk: number, width: number): [string, string] => {
      const b = topKBlockSize(width, kk);
      return b ? blockedTopK(g, t, width, kk, b) : topK(g, t, kk, { largest: true });
    };
    const o = emitExactCandidateTopK(g, sae, xin, { m: enc.extraCandidates, kernel: enc.kernel, topK: topKOf }); // [N, k], [N, k], [N]
    const shapeBTK = g.op('Concat', [bt, g.constI64('sae_k_dim', [k])], { axis: attr.int(0) });
    g.node('Reshape', [o.values, shapeBTK], { outputs: ['topk_values'] });
    g.node('Reshape', [o.indices, shapeBTK], { outputs: ['topk_indices'] });
    g.node('Reshape', [o.exact, bt], { outputs: ['sae_exact'] }); //                                      bool [B, T]
    g.output('topk_values', TensorDataType.FLOAT, ['batch', 'seq', k]);
    g.output('topk_indices', TensorDataType.INT64, ['batch', 'seq', k]);
    g.output('sae_exact', TensorDataType.BOOL, ['batch', 'seq']);
    return ['topk_values', 'topk_indices', 'sae_exact'];
  }
  const pre = ctx.precision.linearTransB(g, xin, 'sae.w_enc', sae.wEnc, { name: 'sae.b_enc', data: sae.bEnc }, dModel, dSae); // [N, dSae], TopK in f32
  const block = topKBlockSize(dSae, k);
  const [vals, idx] = block ? blockedTopK(g, pre, dSae, k, block) : topK(g, pre, k, { largest: true }); // [N, k]
  const shapeBTK = g.op('Concat', [bt, g.constI64('sae_k_dim', [k])], { axis: attr.int(0) });
  g.node('Reshape', [g.op('Relu', [vals]), shapeBTK], { outputs: ['topk_values'] });
  g.node('Reshape', [idx, shapeBTK], { outputs: ['topk_indices'] });
  g.output('topk_values', TensorDataType.FLOAT, ['batch', 'seq', k]);
  g.output('topk_indices', TensorDataType.INT64, ['batch', 'seq', k]);
  return ['topk_values', 'topk_indices'];
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

