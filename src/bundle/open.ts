/** A bundle made runnable: its fused engine (model to layer L + SAE TopK) and its tokenizer. */
import { ForwardEngine } from '../engine/forward-engine.js';
import { loadTokenizer, type Tokenizer } from '../engine/tokenizer.js';
import type { TextFeatures } from '../head/text-features.js';
import type { Provider } from '../runtime/session.js';
import type { PrecisionSetting } from '../config.js';
import { FEATURIZE_BATCH_TOKENS, featurizeTexts } from './featurize.js';
import type { Bundle } from './load.js';

export interface RunnableBundle {
  bundle: Bundle;
  engine: ForwardEngine;
  tokenizer: Tokenizer;
}

export interface OpenBundleOptions {
  cacheDir: string;
  provider?: Provider;
  threads?: number;
  /** weight precision setting (default: the engine's, f32) */
  precision?: PrecisionSetting;
  warn?: (message: string) => void;
}

export async function openBundle(bundle: Bundle, o: OpenBundleOptions): Promise<RunnableBundle> {
  const tokenizer = await loadTokenizer(bundle.modelDir);
  const engine = await ForwardEngine.open({
    modelDir: bundle.modelDir, layer: bundle.manifest.layer, sae: bundle.sae,
    cacheDir: o.cacheDir, provider: o.provider, threads: o.threads, precision: o.precision, warn: o.warn,
  });
  return { bundle, engine, tokenizer };
}

/** Featurise texts exactly as the bundle was trained (its window length and overlap). */
export function featurizeForBundle(r: RunnableBundle, texts: readonly string[], onProgress?: (done: number, total: number) => void): Promise<TextFeatures[]> {
  const m = r.bundle.manifest.metrics as { window_tokens?: number; window_overlap?: number };
  return featurizeTexts(r.engine, r.tokenizer, texts, {
    windowTokens: m.window_tokens ?? 512, overlap: m.window_overlap ?? 64, batchTokens: FEATURIZE_BATCH_TOKENS, onProgress,
  });
}
