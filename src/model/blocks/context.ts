/** What every block reads while it writes its part of a graph. */
import type { WeightSource } from '../checkpoint.js';
import { type GraphBuilder, attr } from '../onnx/graph-builder.js';
import type { MoeKernel } from './moe.js';
import type { Precision } from './precision.js';

/** Choices between equivalent implementations (each part of the graph cache key); defaults are the measured best. */
export interface GraphOptions {
  /** sparse MLP kernel; default 'ort-moe' (see blocks/moe.ts) */
  moeKernel?: MoeKernel;
}

export interface BlockContext {
  g: GraphBuilder;
  /** the checkpoint's tensors (read lazily, one at a time) */
  w: WeightSource;
  precision: Precision;
  options: GraphOptions;
  /** int64 [2]: the runtime B and T, to reshape flat [N, X] rows back to [B, T, X] */
  bt: string;
}

/** The graph's shared inputs a decoder stack reads, built once before layer 0. */
export interface DecoderInputs {
  /** int64 [B, T] token ids and attention mask (1 = real token) */
  ids: string;
  mask: string;
  /** int64 [B, T]: cumsum(mask) - 1 clamped at 0 (left-padded rows get the positions they have alone) */
  positions: string;
  /** bool [B, 1, T, T]: query i may attend key j iff j <= i and key j is real */
  attnMask: string;
}

/** [B, T] ++ [...tail]: the shape to reshape flat rows to [B, T, ...tail]. */
export function shapeBT(ctx: BlockContext, hint: string, tail: number[]): string {
  return ctx.g.op('Concat', [ctx.bt, ctx.g.constI64(hint, tail)], { axis: attr.int(0) });
}
