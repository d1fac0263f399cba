/**
 * Qwen-Scope SAEs: one `torch.save` file per layer, `layer{L}.sae.pt`, holding
 *   W_enc [d_sae, d_model]   b_enc [d_sae]   W_dec [d_model, d_sae]   b_dec [d_model]
 * and no config: d_sae and d_model come from the shapes, L from the file name, k from the caller or
 * from the release name (`...-W64K-L0_50` means k = 50).
 * Encode (the official demo's topk_relu): pre = x @ W_enc^T + b_enc, keep the top k of relu(pre).
 * There is no b_dec subtraction, so inputBias is null.
 */
import { basename } from 'node:path';
import { formatError, validationError } from '../../errors.js';
import { listNames } from '../artifact-limits.js';
import { LoadSaeOptions, checkK, expectShape, reconcileLayer } from './common.js';
import { TorchFile } from './torch-file.js';
import { TopKSae } from './types.js';

export const QWEN_SCOPE_FILE = /^layer(\d+)\.sae\.pt$/;

/** k from a release name anywhere in the path: `SAE-Res-Qwen3-8B-Base-W64K-L0_50` -> 50. */
export function kFromReleaseName(path: string): number | undefined {
  const m = /[-_]L0_(\d+)(?!\d)/i.exec(path);
  return m ? Number(m[1]) : undefined;
}

export function loadQwenScopeSae(file: string, opts: LoadSaeOptions = {}): TopKSae {
  const nameMatch = QWEN_SCOPE_FILE.exec(basename(file));
  const layer = reconcileLayer(file, nameMatch ? Number(nameMatch[1]) : undefined, opts.layer);
  const f = TorchFile.open(file);
  try {
    if (!f.has('W_enc')) throw formatError(`${file}: no 'W_enc' tensor: not a Qwen-Scope SAE (tensors: ${listNames(f.tensors.keys())})`);
    const encShape = f.info('W_enc').shape;
    if (encShape.length !== 2) throw formatError(`${file}: 'W_enc' has shape [${encShape}], expected [d_sae, d_model]`);
    const [dSae, dModel] = encShape;
    expectShape(file, f, 'b_enc', [dSae], 'encoder bias [d_sae]');
    expectShape(file, f, 'W_dec', [dModel, dSae], 'decoder [d_model, d_sae]');
    expectShape(file, f, 'b_dec', [dModel], 'decoder bias [d_model]');
    const k = opts.k ?? kFromReleaseName(file);
    if (k === undefined)
      throw validationError(`${file}: Qwen-Scope files carry no config, so k must be given (--k, or a path containing the release name such as '...-W64K-L0_50')`);
    return {
      format: 'qwen-scope',
      source: file,
      dModel,
      dSae,
      k: checkK(file, k, dSae),
      layer,
      wEnc: f.readF32('W_enc'), // [dSae, dModel] as stored
      bEnc: f.readF32('b_enc'),
      inputBias: null,
      wDec: opts.decoder ? f.readF32('W_dec') : null, // [dModel, dSae] as stored
      bDec: f.readF32('b_dec'),
    };
  } finally {
    f.close();
  }
}
