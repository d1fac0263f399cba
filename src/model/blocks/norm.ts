/** RMSNorm variants, computed in float32 whatever the weights' precision. */
import { TensorDataType, attr } from '../onnx/graph-builder.js';
import type { BlockContext } from './context.js';

export interface RmsNormOptions {
  eps: number;
  /**
   * Zero-centred weight (Qwen3.5's Qwen3_5RMSNorm): y = norm(x) * (1 + w). The stored w is shifted by 1 once,
   * here, so the graph runs the same RMSNormalization either way. Default false: y = norm(x) * w (Qwen3).
   */
  zeroCentred?: boolean;
}

/** x [..., dim] -> x * rsqrt(mean(x^2, -1) + eps) * weight, weight read from the checkpoint tensor `name` [dim]. */
export function rmsNorm(ctx: BlockContext, x: string, name: string, dim: number, o: RmsNormOptions): string {
  const stored = ctx.w.readF32(name);
  const scale = o.zeroCentred ? stored.map((v) => Math.fround(1 + v)) : stored;
  const weight = ctx.g.weight(name, TensorDataType.FLOAT, [dim], scale);
  return rmsNormWith(ctx, x, weight, o.eps);
}

/** RMSNorm with a weight value already in the graph. */
export function rmsNormWith(ctx: BlockContext, x: string, weight: string, eps: number): string {
  return ctx.g.op('RMSNormalization', [x, weight], { axis: attr.int(-1), epsilon: attr.float(eps), stash_type: attr.int(1) });
}
