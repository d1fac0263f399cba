/**
 * EleutherAI sparsify SAEs: a hookpoint directory (e.g. `layers.6/`) with `cfg.json` + `sae.safetensors`:
 *   encoder.weight [d_sae, d_in]   encoder.bias [d_sae]   W_dec [d_sae, d_in]   b_dec [d_in]
 * Encode: relu((x - b_dec) @ encoder.weight^T + encoder.bias), then top-k.
 * Hookpoint `layers.L` is the output of decoder layer L: the residual stream this service reads.
 */
import { basename, join } from 'node:path';
import { formatError, validationError } from '../../errors.js';
import { brief } from '../artifact-limits.js';
import { SafetensorsFile } from '../safetensors.js';
import { LoadSaeOptions, checkK, expectShape, reconcileLayer, transpose } from './common.js';
import { readJson } from './saelens.js';
import { TopKSae } from './types.js';

export const SPARSIFY_WEIGHTS = 'sae.safetensors';

/** The layer a sparsify hookpoint directory reads: `layers.6` or `model.layers.6` -> 6; undefined for other names. */
export function layerFromHookpoint(dir: string): number | undefined {
  const name = basename(dir);
  const m = /^(?:model\.)?layers\.(\d+)(\..+)?$/.exec(name);
  if (!m) return undefined;
  if (m[2]) throw formatError(`${dir}: hookpoint '${name}' is a submodule's output, not the residual stream after a decoder layer (expected 'layers.L')`);
  return Number(m[1]);
}

export function loadSparsifySae(dir: string, opts: LoadSaeOptions = {}): TopKSae {
  const cfgPath = join(dir, 'cfg.json');
  const cfg = readJson(cfgPath);
  const activation = cfg.activation ?? 'topk';
  if (activation !== 'topk') throw formatError(`${cfgPath}: activation ${brief(activation)} is not supported (only 'topk')`);
  if (cfg.transcode === true) throw formatError(`${cfgPath}: transcoders (transcode = true) read a module's input, not the residual stream: not supported`);
  for (const flag of ['gram_lookup', 'embed_skip']) if (cfg[flag] === true) throw formatError(`${cfgPath}: ${flag} = true changes the encoder input and is not supported`);
  if (typeof cfg.k !== 'number') throw formatError(`${cfgPath}: no numeric k`);
  const layer = reconcileLayer(dir, layerFromHookpoint(dir), opts.layer);

  const weightsPath = join(dir, SPARSIFY_WEIGHTS);
  const st = SafetensorsFile.open(weightsPath);
  try {
    if (!st.tensors.has('encoder.weight')) throw formatError(`${weightsPath}: missing tensor 'encoder.weight' (encoder [d_sae, d_in])`);
    const encShape = st.info('encoder.weight').shape;
    if (encShape.length !== 2) throw formatError(`${weightsPath}: 'encoder.weight' has shape [${encShape}], expected [d_sae, d_in]`);
    const [dSae, dIn] = encShape;
    if (cfg.d_in !== undefined && cfg.d_in !== dIn) throw formatError(`${cfgPath}: d_in = ${brief(cfg.d_in)} but encoder.weight is [${encShape}]`);
    const declared = typeof cfg.num_latents === 'number' && cfg.num_latents > 0 ? cfg.num_latents : typeof cfg.expansion_factor === 'number' ? cfg.expansion_factor * dIn : undefined;
    if (declared !== undefined && declared !== dSae) throw formatError(`${cfgPath}: num_latents/expansion_factor give ${declared} latents but encoder.weight is [${encShape}]`);
    const src = { has: (n: string) => st.tensors.has(n), info: (n: string) => st.info(n), readF32: (n: string) => st.readF32(n) };
    expectShape(weightsPath, src, 'encoder.bias', [dSae], 'encoder bias [d_sae]');
    expectShape(weightsPath, src, 'W_dec', [dSae, dIn], 'decoder [d_sae, d_in]');
    expectShape(weightsPath, src, 'b_dec', [dIn], 'decoder bias [d_in]');
    if (opts.k !== undefined && opts.k !== cfg.k) throw validationError(`${cfgPath}: this SAE was trained with k = ${cfg.k}, but k = ${opts.k} was requested`);
    const bDec = st.readF32('b_dec');
    return {
      format: 'sparsify',
      source: dir,
      dModel: dIn,
      dSae,
      k: checkK(cfgPath, cfg.k, dSae),
      layer,
      wEnc: st.readF32('encoder.weight'), // [dSae, dModel] as stored
      bEnc: st.readF32('encoder.bias'),
      inputBias: bDec,
      wDec: opts.decoder ? transpose(st.readF32('W_dec'), dSae, dIn) : null, // [d_sae, d_in] -> [dModel, dSae]
      bDec,
    };
  } finally {
    st.close();
  }
}
