/**
 * Which weight precision a forward pass runs at: decided here from the setting (TOXSCOPE_PRECISION /
 * --precision) and the execution provider actually in use, nowhere else.
 *
 *   auto on CUDA  -> f16 (half the memory, tensor cores)
 *   auto on CPU   -> CPU_AUTO_PRECISION: f32. int8 was measured (`bench engine --precision int8`, `bench
 *                    precision-goldens`, `toxscope fidelity`, test/int8-engine.test.ts): about 2x faster in a third
 *                    of the memory, keeps the demo head's decisions, but not the fired sets on the goldens (4-45%
 *                    identical vs the 97% target; 97% needs a residual within ~1e-3 of float32's, int8 weights alone
 *                    leave 2%: README "Precision"), so it is opt-in
 *   f32 | f16 | int8 -> as asked; except that a CUDA request which falls back to CPU uses the CPU's choice for
 *                    'f16' (float16 MatMuls are a GPU format: slow on CPU), so no CUDA graph is built for a CPU run
 */
import type { PrecisionSetting } from '../config.js';
import type { WeightDtype } from '../model/graph.js';
import type { Provider } from '../runtime/session.js';

export type { PrecisionSetting } from '../config.js';

export const CPU_AUTO_PRECISION: WeightDtype = 'f32';

/** The weights' precision for `setting` on the provider in use (after any fallback). */
export function resolvePrecision(setting: PrecisionSetting, provider: Provider, o: { fellBackFromCuda?: boolean } = {}): WeightDtype {
  if (setting === 'auto') return provider === 'cuda' ? 'f16' : CPU_AUTO_PRECISION;
  if (setting === 'f16' && provider === 'cpu' && o.fellBackFromCuda) return CPU_AUTO_PRECISION;
  return setting;
}
