/**
 * A TopK sparse autoencoder's encoder, normalised from any supported file format
 * (Qwen-Scope .pt, SAELens, EleutherAI sparsify) to one shape of maths:
 *
 *   pre    = (x - inputBias) @ wEnc^T + bEnc          x: [N, dModel]  pre: [N, dSae]
 *   idx    = topk(pre, k)                              idx: [N, k]
 *   values = relu(pre[idx])                            a kept value of 0 means "did not fire"
 *
 * topk-then-relu and relu-then-topk keep the same positive codes, so one encoder serves every format.
 */
export type SaeFormat = 'qwen-scope' | 'saelens' | 'sparsify';

export interface TopKSae {
  format: SaeFormat;
  /** where it was loaded from (file or directory) */
  source: string;
  dModel: number;
  dSae: number;
  k: number;
  /** the layer the SAE reads (0-based residual after decoder layer L), when the files say so */
  layer?: number;
  /** float32 [dSae, dModel], row f is feature f's encoder direction */
  wEnc: Float32Array;
  /** float32 [dSae] */
  bEnc: Float32Array;
  /** float32 [dModel] subtracted from x before encoding (SAELens apply_b_dec_to_input, sparsify), or null */
  inputBias: Float32Array | null;
  /** float32 [dModel, dSae] decoder, kept for explanations and reconstruction checks; may be null when not loaded */
  wDec: Float32Array | null;
  bDec: Float32Array | null;
}
