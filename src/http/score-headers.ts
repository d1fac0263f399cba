/** Response headers of the three scoring routes. */
import type { Context } from 'hono';
import type { ClassifyOutput } from '../engine/classifier.js';
import type { BundleInfo } from '../service/deps.js';

/**
 * Headers on every scored response: timings as a standard Server-Timing header (milliseconds), the bundle
 * version, and, for a bundle on a synthetic backbone (the demo), a header saying its scores are not Qwen3's:
 * it reaches clients of the compatible APIs too, whose bodies have no place for it.
 */
export function setScoreHeaders(c: Context, out: ClassifyOutput, info: Pick<BundleInfo, 'syntheticBackbone'>): void {
  const t = out.timings;
  const f = (x: number) => x.toFixed(2);
  c.header('Server-Timing', `tokenize;dur=${f(t.tokenizeMs)}, queue;dur=${f(t.queueMs)}, inference;dur=${f(t.inferenceMs)}, total;dur=${f(t.totalMs)}`);
  c.header('X-Toxscope-Bundle-Version', out.version);
  if (info.syntheticBackbone) c.header('X-Toxscope-Synthetic-Backbone', 'true; scores measure the pipeline, not Qwen3 features');
}
