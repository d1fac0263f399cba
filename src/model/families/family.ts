/**
 * A model family: one per Hugging Face `model_type` (qwen3, qwen3_moe, ...), registered in registry.ts. Each
 * family file owns its config.json schema (zod), the names and shapes of the tensors it needs up to a layer,
 * and its decoder layer; the blocks it is built from (norms, RoPE, mask, attention, MLPs, the SAE tail) live
 * once in ../blocks/. A family's `parse` returns a ModelArch: the parsed config with the family's graph code
 * bound to it, so nothing outside the family file needs to know the config's type.
 */
import type { BlockContext, DecoderInputs } from '../blocks/context.js';

/** What every family's parsed config has (what the engine, bundles and /info read). */
export interface BaseConfig {
  hiddenSize: number;
  numLayers: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
  torchDtype?: string;
}

export interface ModelArch<C extends BaseConfig = BaseConfig> {
  /** the family's model_type, e.g. 'qwen3' (recorded in graph cache keys, engine info, bundle manifests) */
  readonly family: string;
  /** the family's graph version (bumped whenever its graph changes; part of the graph cache key) */
  readonly familyVersion: number;
  readonly config: C;
  /** name of the token embedding table [vocab, D] (e.g. 'model.embed_tokens.weight') */
  readonly embeddingName: string;
  /** every tensor the forward pass to `layer` (0-based, inclusive) reads, with its shape; never lm_head */
  requiredTensors(layer: number): Map<string, number[]>;
  /**
   * Emit decoder layers 0..layer: x [N, D] float32 (the embedded tokens, rows N = B*T) -> the raw residual
   * stream after decoder layer `layer`, [N, D] float32. Shared tables (RoPE) are built here from `inputs`.
   */
  emitDecoder(ctx: BlockContext, inputs: DecoderInputs, x: string, layer: number): string;
}

export interface Family {
  /** config.json `model_type` this family reads (the top-level one, e.g. 'qwen3_5' for a nested text_config) */
  readonly modelType: string;
  /** bump when the graph this family emits changes: cached graphs of older versions are then rebuilt */
  readonly version: number;
  /** human name for messages and the README, e.g. 'Qwen3 (dense)' */
  readonly title: string;
  /**
   * Parse a whole config.json object (nested `text_config` included, where the family has one) into a ModelArch,
   * or throw a format error naming `where` and the offending key.
   */
  parse(raw: Record<string, unknown>, where: string): ModelArch;
}
