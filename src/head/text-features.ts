/** The head's input: what the engine hands over for each text. */

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
  /** the same statistics of each sentence (src/engine/segments.ts), when the text has more than one */
  segments?: TextFeatures[];
  /** segments[windowsFrom..] are windows over long sentences, the ones before are sentences (default: none are windows) */
  windowsFrom?: number;
}
