/** SwiGLU feed-forward: down(silu(gate(h)) * up(h)). */
import { attr } from '../onnx/graph-builder.js';
import type { BlockContext } from './context.js';
import { fusedTransposed, transposed } from './weights.js';

/** silu(gate) * up on two [N, F] values. */
export function swiGlu(ctx: BlockContext, gate: string, up: string): string {
  const { g } = ctx;
  return g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
}

/**
 * h [N, D] -> [N, D] with `${prefix}{gate,up,down}_proj.weight` ([F, D], [F, D], [D, F]); gate and up share one
 * MatMul. `prefix` e.g. 'model.layers.3.mlp.' (or a shared expert's 'model.layers.3.mlp.shared_expert.').
 */
export function swiGluMlp(ctx: BlockContext, prefix: string, h: string, D: number, F: number): string {
  const { g, w, precision } = ctx;
  const wgu = fusedTransposed(w, [prefix + 'gate_proj.weight', prefix + 'up_proj.weight'], D);
  const gu = precision.linear(g, h, prefix + 'gate_up_proj.weightT', wgu, D, 2 * F); //                   [N, 2F]
  const [gate, up] = g.node('Split', [gu, g.constI64('gate_up_split', [F, F])], { outputs: 2, attrs: { axis: attr.int(1) } });
  const wd = transposed(w.readF32(prefix + 'down_proj.weight'), D, F);
  return precision.linear(g, swiGlu(ctx, gate, up), prefix + 'down_proj.weightT', wd, F, D); //          [N, D]
}
