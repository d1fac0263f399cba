/**
 * SAELens SAEs: `cfg.json` + `sae_weights.safetensors` with
 *   W_enc [d_in, d_sae]   b_enc [d_sae]   W_dec [d_sae, d_in]   b_dec [d_in]
 * Encode (TopK architecture): pre = (x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc; topk; relu of the kept values.
 * Only the cfg fields that change the encoder's maths matter here; the ones this loader does not
 * implement are refused by name rather than silently ignored.
 */
import { join } from 'node:path';
import { formatError, validationError } from '../../errors.js';
import { ARTIFACT_LIMITS, brief, readJsonFile } from '../artifact-limits.js';
import { SafetensorsFile } from '../safetensors.js';
import { LoadSaeOptions, checkK, expectShape, reconcileLayer, transpose } from './common.js';
import { TopKSae } from './types.js';

export const SAELENS_WEIGHTS = 'sae_weights.safetensors';

type Cfg = Record<string, unknown>;

export function loadSaeLensSae(dir: string, opts: LoadSaeOptions = {}): TopKSae {
  const cfgPath = join(dir, 'cfg.json');
  const cfg = readJson(cfgPath);
  const meta = (typeof cfg.metadata === 'object' && cfg.metadata !== null ? cfg.metadata : {}) as Cfg;
  const field = (name: string) => cfg[name] ?? meta[name];

  const k = topKOf(cfgPath, cfg);
  const norm = field('normalize_activations');
  if (norm !== undefined && norm !== null && norm !== 'none')
    throw formatError(`${cfgPath}: normalize_activations ${brief(norm)} is not supported (only 'none')`);
  for (const flag of ['rescale_acts_by_decoder_norm'])
    if (field(flag) === true) throw formatError(`${cfgPath}: ${flag} = true is not supported`);
  const reshape = field('reshape_activations');
  if (reshape !== undefined && reshape !== null && reshape !== 'none') throw formatError(`${cfgPath}: reshape_activations ${brief(reshape)} is not supported (the SAE must read the residual stream)`);
  if (field('hook_head_index') !== undefined && field('hook_head_index') !== null) throw formatError(`${cfgPath}: hook_head_index is set: per-head SAEs are not supported`);
  const applyBDec = field('apply_b_dec_to_input') ?? true;
  if (typeof applyBDec !== 'boolean') throw formatError(`${cfgPath}: apply_b_dec_to_input must be true or false`);
  const layer = reconcileLayer(cfgPath, layerOf(cfgPath, field('hook_name'), field('hook_layer')), opts.layer);

  const weightsPath = join(dir, SAELENS_WEIGHTS);
  const st = SafetensorsFile.open(weightsPath);
  try {
    if (!st.tensors.has('W_enc')) throw formatError(`${weightsPath}: missing tensor 'W_enc' (encoder [d_in, d_sae])`);
    const encShape = st.info('W_enc').shape;
    if (encShape.length !== 2) throw formatError(`${weightsPath}: 'W_enc' has shape [${encShape}], expected [d_in, d_sae]`);
    const [dIn, dSae] = encShape;
    if (cfg.d_in !== undefined && cfg.d_in !== dIn) throw formatError(`${cfgPath}: d_in = ${brief(cfg.d_in)} but W_enc is [${encShape}]`);
    if (cfg.d_sae !== undefined && cfg.d_sae !== dSae) throw formatError(`${cfgPath}: d_sae = ${brief(cfg.d_sae)} but W_enc is [${encShape}]`);
    const src = { has: (n: string) => st.tensors.has(n), info: (n: string) => st.info(n), readF32: (n: string) => st.readF32(n) };
    expectShape(weightsPath, src, 'b_enc', [dSae], 'encoder bias [d_sae]');
    expectShape(weightsPath, src, 'W_dec', [dSae, dIn], 'decoder [d_sae, d_in]');
    expectShape(weightsPath, src, 'b_dec', [dIn], 'decoder bias [d_in]');
    if (opts.k !== undefined && opts.k !== k) throw validationError(`${cfgPath}: this SAE was trained with k = ${k}, but k = ${opts.k} was requested`);
    const bDec = st.readF32('b_dec');
    return {
      format: 'saelens',
      source: dir,
      dModel: dIn,
      dSae,
      k: checkK(cfgPath, k, dSae),
      layer,
      wEnc: transpose(st.readF32('W_enc'), dIn, dSae), // [d_in, d_sae] -> [dSae, dModel]
      bEnc: st.readF32('b_enc'),
      inputBias: applyBDec ? bDec : null,
      wDec: opts.decoder ? transpose(st.readF32('W_dec'), dSae, dIn) : null, // [d_sae, d_in] -> [dModel, dSae]
      bDec,
    };
  } finally {
    st.close();
  }
}

/**
 * k of a TopK SAE. SAELens >= 5 says architecture 'topk' with a top-level k; older versions say
 * architecture 'standard' with activation_fn_str 'topk' and activation_fn_kwargs.k. Same maths.
 */
function topKOf(cfgPath: string, cfg: Cfg): number {
  const arch = cfg.architecture ?? 'standard';
  const actFn = cfg.activation_fn_str ?? cfg.activation_fn;
  const kwargs = (cfg.activation_fn_kwargs ?? {}) as Cfg;
  let k: unknown;
  if (arch === 'topk') k = cfg.k ?? kwargs.k;
  else if (arch === 'standard' && actFn === 'topk') k = kwargs.k ?? cfg.k;
  else
    throw formatError(
      `${cfgPath}: architecture ${brief(arch)}${actFn ? ` with activation ${brief(actFn)}` : ''} is not supported: ` +
        `only TopK SAEs are (architecture 'topk', or 'standard' with activation_fn_str 'topk')`,
    );
  if (typeof k !== 'number') throw formatError(`${cfgPath}: TopK SAE without a numeric k`);
  return k;
}

/**
 * The residual layer an SAE reads, from hook_name (TransformerLens `blocks.L.hook_resid_post`,
 * Hugging Face `model.layers.L`) or hook_layer. `blocks.L.hook_resid_pre` is the residual after layer L-1.
 */
export function layerOf(cfgPath: string, hookName: unknown, hookLayer: unknown): number | undefined {
  if (typeof hookName === 'string') {
    const tl = /^blocks\.(\d+)\.hook_(resid_post|resid_pre)$/.exec(hookName);
    if (tl) {
      const l = Number(tl[1]);
      if (tl[2] === 'resid_post') return l;
      if (l === 0) throw formatError(`${cfgPath}: hook '${hookName}' reads the embeddings, not a decoder layer's residual`);
      return l - 1;
    }
    const hf = /^(?:model\.)?layers\.(\d+)$/.exec(hookName);
    if (hf) return Number(hf[1]);
    throw formatError(`${cfgPath}: hook ${brief(hookName)} is not the residual stream after a decoder layer (expected blocks.L.hook_resid_post)`);
  }
  if (hookLayer === undefined || hookLayer === null) return undefined;
  if (!Number.isSafeInteger(hookLayer) || (hookLayer as number) < 0) throw formatError(`${cfgPath}: hook_layer ${brief(hookLayer)} is not a layer index`);
  return hookLayer as number;
}

export function readJson(path: string): Cfg {
  const v = readJsonFile(path, ARTIFACT_LIMITS.smallJsonBytes, 'SAE config');
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw formatError(`${path}: not a JSON object`);
  return v as Cfg;
}
