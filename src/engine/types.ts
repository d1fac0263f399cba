/** Data that flows from the ONNX session to the head. */

/** Top-k SAE codes of a padded batch, as they leave the ONNX session. */
export interface TopKBatch {
  batch: number; //   B
  seqLen: number; //  T
  k: number;
  /** float32 [B, T, k]: relu'd code values; 0 means the kept feature did not fire */
  values: Float32Array;
  /** int32 [B, T, k]: feature ids */
  indices: Int32Array;
  /** uint8 [B, T]: 1 for real tokens, 0 for padding */
  mask: Uint8Array;
}

/** Per-text sparse SAE feature statistics: what the head reads. */
export interface TextFeatures {
  /** real tokens counted (pads excluded; all windows of a long text together) */
  nTokens: number;
  /** features that fired on at least one token, ascending */
  ids: Int32Array;
  /** number of tokens on which each feature fired */
  counts: Int32Array;
  /** counts / nTokens */
  rates: Float32Array;
  /** maximum code value of each feature over the text's tokens */
  maxActs: Float32Array;
}
