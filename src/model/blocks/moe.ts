/**
 * Sparse mixture-of-experts MLP (Qwen3-MoE, Qwen3.5-MoE), computing only what each token routes to:
 *
 *   p = softmax(h · router^T)             over all E experts, float32            [N, E]
 *   (w, e) = top-k of p                    renormalised w / sum(w) when normTopK  [N, k]
 *   out = Σ_j w_j · down_e(silu(gate_e · h) · up_e · h)                          [N, D]
 *
 * Two implementations, both exact to float32 rounding:
 * - 'ort-moe' (the default): onnxruntime's com.microsoft MoE kernel. Its CPU routing is exactly Hugging Face's
 *   (softmax over all experts in float32, partial sort for the top k, renormalised only with
 *   normalize_routing_weights=1), it groups the tokens of each expert and runs one GEMM pair per expert, in
 *   parallel over experts; the CPU kernel only takes fused SwiGLU weights interleaved row by row
 *   (swiglu_fusion=1: rows g0, u0, g1, u1, ... of fc1 [E, 2I, D]), with activation_alpha 1, activation_beta 0
 *   and no limit, which is plain silu(g) · u.
 * - 'gathered': the same maths decomposed into ai.onnx ops: Softmax, TopK, then per expert NonZero -> Gather of
 *   its tokens -> two MatMuls -> one ScatterND(add) for all experts. Kept to measure the kernel against and as
 *   the fallback for a provider without the contrib kernel.
 * Why 'ort-moe' is the default: measured by `npm run -s bench -- engine --family qwen3-moe --layer 0 --moe both
 * --json` (Qwen3-30B-A3B shapes: hidden 2048, 128 experts, top-8, width 768; 8 x 128 tokens, 2 threads, a heavily
 * shared machine, so each kernel is compared with a dense Qwen3 graph timed in the same phase, runs alternating):
 * effective FLOP/s (routed work only) relative to the dense graph's, 'ort-moe' 0.89 vs 'gathered' 0.75; session
 * load 1.6 s vs 71 s (the decomposition is some 1,300 nodes per layer with 256 MatMul weights to prepack). It is
 * also one node per layer and finds a token's experts without a float zero-weight test.
 * On the tiny goldens both reproduce Hugging Face within about 1e-6 (test/engine-qwen3-moe.test.ts).
 */
import { TensorDataType, attr } from '../onnx/graph-builder.js';
import type { BlockContext } from './context.js';
import { swiGlu } from './mlp.js';
import { transposed } from './weights.js';

export type MoeKernel = 'ort-moe' | 'gathered';

export interface MoeShape {
  hiddenSize: number; //  D
  numExperts: number; //  E
  topK: number; //        k
  expertWidth: number; // I (moe_intermediate_size)
  /** renormalise the top-k probabilities to sum to 1 (norm_topk_prob; always for Qwen3.5-MoE) */
  normTopK: boolean;
}

/** An expert's weights as Hugging Face applies them: gate, up [I, D] and down [D, I] (float32, row-major). */
export interface ExpertWeights {
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
}

/**
 * h [N, D] -> [N, D]. `routerName`: the router weight [E, D] in the checkpoint; `expert(e)` reads expert e's
 * weights (families differ in how their files store experts); `hint` names the graph's weights.
 */
export function sparseMoe(ctx: BlockContext, hint: string, h: string, routerName: string, s: MoeShape, expert: (e: number) => ExpertWeights, kernel: MoeKernel = 'ort-moe'): string {
  const { g, w } = ctx;
  const { hiddenSize: D, numExperts: E } = s;
  // Router logits in float32 whatever the weights' precision: routing decisions must not move.
  const routerT = g.weight(hint + '.router.weightT', TensorDataType.FLOAT, [D, E], transposed(w.readF32(routerName), E, D));
  const logits = g.op('MatMul', [h, routerT]); //                                                           [N, E]
  return kernel === 'ort-moe' ? ortMoe(ctx, hint, h, logits, s, expert) : gatheredMoe(ctx, hint, h, logits, s, expert);
}

function ortMoe(ctx: BlockContext, hint: string, h: string, logits: string, s: MoeShape, expert: (e: number) => ExpertWeights): string {
  const { hiddenSize: D, numExperts: E, expertWidth: I } = s;
  const fc1 = new Float32Array(E * 2 * I * D); // [E, 2I, D], rows interleaved g0, u0, g1, u1, ...
  const fc2 = new Float32Array(E * D * I); //     [E, D, I]
  for (let e = 0; e < E; e++) {
    const { gate, up, down } = expert(e);
    const base = e * 2 * I * D;
    for (let i = 0; i < I; i++) {
      fc1.set(gate.subarray(i * D, (i + 1) * D), base + 2 * i * D);
      fc1.set(up.subarray(i * D, (i + 1) * D), base + (2 * i + 1) * D);
    }
    fc2.set(down, e * D * I);
  }
  return ctx.precision.moe(ctx.g, h, logits, { name: hint + '.experts', fc1, fc2, shape: s });
}

function gatheredMoe(ctx: BlockContext, hint: string, h: string, logits: string, s: MoeShape, expert: (e: number) => ExpertWeights): string {
  const { g, precision } = ctx;
  const { hiddenSize: D, numExperts: E, expertWidth: I, topK: k } = s;
  const probs = g.op('Softmax', [logits], { axis: attr.int(-1) }); //                                      [N, E]
  const [top, idx] = g.node('TopK', [probs, g.constI64('moe_k', [k])], { outputs: 2, attrs: { axis: attr.int(-1), largest: attr.int(1), sorted: attr.int(1) } }); // [N, k]
  const weights = s.normTopK ? g.op('Div', [top, g.op('ReduceSum', [top, g.constI64('moe_last', [-1])], { keepdims: attr.int(1) })]) : top;
  const zerosNE = g.op('Mul', [probs, g.constF32('moe_zero', [0], [])]);
  const routed = g.op('ScatterElements', [zerosNE, idx, weights], { axis: attr.int(1) }); //               [N, E]: w where routed, else 0
  const ys: string[] = [];
  const toks: string[] = [];
  for (let e = 0; e < E; e++) {
    const we = g.op('Gather', [routed, g.constI64(`moe_e${e}`, [e], [])], { axis: attr.int(1) }); //        [N]
    const tok = g.op('Reshape', [g.op('NonZero', [g.op('Greater', [we, g.constF32('moe_zero_s', [0], [])])]), g.constI64('moe_flat', [-1])]); // [M]
    const xs = g.op('Gather', [h, tok], { axis: attr.int(0) }); //                                           [M, D]
    const { gate, up, down } = expert(e);
    const wgu = new Float32Array(D * 2 * I); //                                                              [D, 2I] = [gate | up]^T
    for (let i = 0; i < I; i++)
      for (let d = 0; d < D; d++) {
        wgu[d * 2 * I + i] = gate[i * D + d];
        wgu[d * 2 * I + I + i] = up[i * D + d];
      }
    const gu = precision.linear(g, xs, `${hint}.experts.${e}.gate_up.weightT`, wgu, D, 2 * I); //         [M, 2I]
    const [gt, u] = g.node('Split', [gu, g.constI64('moe_split', [I, I])], { outputs: 2, attrs: { axis: attr.int(1) } });
    const y = precision.linear(g, swiGlu(ctx, gt, u), `${hint}.experts.${e}.down.weightT`, transposed(down, D, I), I, D); // [M, D]
    ys.push(g.op('Mul', [y, g.op('Unsqueeze', [g.op('Gather', [we, tok], { axis: attr.int(0) }), g.constI64('moe_ax1', [1])])])); // [M, D]
    toks.push(tok);
  }
  const yAll = g.op('Concat', ys, { axis: attr.int(0) }); //                                               [N*k, D]
  const tokAll = g.op('Unsqueeze', [g.op('Concat', toks, { axis: attr.int(0) }), g.constI64('moe_ax_last', [-1])]); // [N*k, 1]
  const zerosND = g.op('Mul', [h, g.constF32('moe_zero_h', [0], [])]);
  return g.op('ScatterND', [zerosND, tokAll, yAll], { reduction: attr.string('add') }); //                 [N, D]
}
