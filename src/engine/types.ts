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
  /**
   * uint8 [B, T], int8 engines only: 1 where the exact-candidate encoder's margin certifies that values/indices are
   * those of the float32 encoder on this residual (src/model/blocks/sae-exact-candidates.ts)
   */
  exact?: Uint8Array;
}
