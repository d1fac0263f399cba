/** Positions and the attention mask every family shares. */
import { TensorDataType, attr } from '../onnx/graph-builder.js';
import type { BlockContext } from './context.js';

/** int64 [B, T]: cumsum(mask) - 1, clamped at 0, so left-padded rows get the positions they have alone. */
export function positionsFromMask(ctx: BlockContext, mask: string): string {
  const { g } = ctx;
  const cum = g.op('CumSum', [mask, g.constI64('axis1', [1], [])]);
  return g.op('Max', [g.op('Sub', [cum, g.constI64('one', [1], [])]), g.constI64('zero', [0], [])]);
}

/** bool [B, 1, T, T]: query i may attend key j iff j <= i and key j is a real token. */
export function causalPaddingMask(ctx: BlockContext, ids: string, mask: string): string {
  const { g } = ctx;
  const T = g.op('Squeeze', [g.op('Shape', [ids], { start: attr.int(1), end: attr.int(2) })]); //       scalar
  const r = g.op('Range', [g.constI64('r0', [0], []), T, g.constI64('r1', [1], [])]); //                   [T]
  const causal = g.op('GreaterOrEqual', [g.op('Unsqueeze', [r, g.constI64('ax1', [1])]), g.op('Unsqueeze', [r, g.constI64('ax0', [0])])]); // [T, T]
  const keyReal = g.op('Unsqueeze', [g.op('Cast', [mask], { to: attr.int(TensorDataType.BOOL) }), g.constI64('ax12', [1, 2])]); // [B, 1, 1, T]
  return g.op('And', [causal, keyReal]); //                                                               [B, 1, T, T]
}
