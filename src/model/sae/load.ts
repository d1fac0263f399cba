/**
 * Load any supported SAE into a TopKSae, detecting the format from the files:
 *
 *   <file>.pt, or a dir with layer{L}.sae.pt files           Qwen-Scope (dir: pick layer{L} with opts.layer)
 *   dir with cfg.json + sae_weights.safetensors              SAELens
 *   dir with cfg.json + sae.safetensors                      EleutherAI sparsify
 *   dir of hookpoint subdirs (layers.L/, blocks.L.hook_resid_post/)   the subdir for opts.layer
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { formatError, validationError } from '../../errors.js';
import { LoadSaeOptions } from './common.js';
import { QWEN_SCOPE_FILE, loadQwenScopeSae } from './qwen-scope.js';
import { SAELENS_WEIGHTS, loadSaeLensSae } from './saelens.js';
import { SPARSIFY_WEIGHTS, loadSparsifySae } from './sparsify.js';
import { SaeFormat, TopKSae } from './types.js';

export type { LoadSaeOptions } from './common.js';

export interface ResolvedSae {
  format: SaeFormat;
  /** the .pt file (Qwen-Scope) or the directory holding cfg.json (SAELens, sparsify) */
  path: string;
}

export function loadSae(path: string, opts: LoadSaeOptions = {}): TopKSae {
  const r = resolveSae(path, opts.layer);
  const sae = r.format === 'qwen-scope' ? loadQwenScopeSae(r.path, opts) : r.format === 'saelens' ? loadSaeLensSae(r.path, opts) : loadSparsifySae(r.path, opts);
  checkFiniteSae(sae);
  return sae;
}

/** NaN or infinite weights would make every code NaN, and every score the head's bias: refuse them by name. */
export function checkFiniteSae(sae: TopKSae): void {
  const arrays: [string, Float32Array | null][] = [['encoder weights', sae.wEnc], ['encoder bias', sae.bEnc], ['input bias', sae.inputBias], ['decoder bias', sae.bDec], ['decoder weights', sae.wDec]];
  for (const [what, a] of arrays) {
    if (!a) continue;
    let probe = 0; // x * 0 is 0 for every finite x and NaN for NaN and +-Infinity: one multiply-add per element
    for (let i = 0; i < a.length; i++) probe += a[i] * 0;
    if (probe === 0) continue;
    const i = a.findIndex((x) => !Number.isFinite(x));
    throw formatError(`${sae.source}: the SAE's ${what} hold ${a[i]} at element ${i}: refusing non-finite weights`);
  }
}

/** Which format `path` holds, and the exact file or directory to load (for `layer` when it holds several). */
export function resolveSae(path: string, layer?: number): ResolvedSae {
  if (!existsSync(path)) throw validationError(`${path}: SAE path does not exist`);
  if (statSync(path).isFile()) {
    if (path.endsWith('.pt')) return { format: 'qwen-scope', path };
    const name = basename(path);
    if (name === SAELENS_WEIGHTS || name === SPARSIFY_WEIGHTS) return resolveSae(dirname(path), layer);
    throw formatError(`${path}: not a recognised SAE file (expected layer{L}.sae.pt, or a directory with cfg.json)`);
  }
  const has = (f: string) => existsSync(join(path, f));
  if (has('cfg.json') && has(SAELENS_WEIGHTS)) return { format: 'saelens', path };
  if (has('cfg.json') && has(SPARSIFY_WEIGHTS)) return { format: 'sparsify', path };
  const names = readdirSync(path);
  const ptLayers = names.filter((n) => QWEN_SCOPE_FILE.test(n));
  if (ptLayers.length) {
    if (layer !== undefined) {
      const file = `layer${layer}.sae.pt`;
      if (!ptLayers.includes(file)) throw validationError(`${path}: no ${file} (this directory has ${ptLayers.sort(byLayer).join(', ')})`);
      return { format: 'qwen-scope', path: join(path, file) };
    }
    if (ptLayers.length === 1) return { format: 'qwen-scope', path: join(path, ptLayers[0]) };
    throw validationError(`${path}: holds SAEs for several layers (${ptLayers.sort(byLayer).join(', ')}): pick one with --layer`);
  }
  if (layer !== undefined) {
    for (const sub of [`layers.${layer}`, `model.layers.${layer}`, `blocks.${layer}.hook_resid_post`]) if (names.includes(sub)) return resolveSae(join(path, sub));
  }
  const hint = layer === undefined ? ' (a directory of per-layer SAEs needs --layer)' : '';
  throw formatError(`${path}: no SAE found: expected layer{L}.sae.pt, cfg.json + ${SAELENS_WEIGHTS} (SAELens) or cfg.json + ${SPARSIFY_WEIGHTS} (sparsify)${hint}`);
}

function byLayer(a: string, b: string): number {
  return Number(QWEN_SCOPE_FILE.exec(a)![1]) - Number(QWEN_SCOPE_FILE.exec(b)![1]);
}
