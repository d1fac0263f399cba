/**
 * The model families, keyed by config.json `model_type` (as text-embeddings-inference's candle backend keys its
 * one Config enum). Reading a checkpoint's config goes through here and nowhere else.
 *
 * Adding a family: write `families/<name>.ts` exporting a `Family` (its zod schema, its tensor names with shapes
 * up to layer L, its decoder layer over ../blocks/), add it to FAMILIES below, and drop its entry from
 * NOT_SUPPORTED. A vision-language checkpoint (Qwen3.5: top-level `model_type: qwen3_5` with the text model in a
 * nested `text_config` and its weights under `model.language_model.`) is keyed by the TOP-LEVEL model_type: its
 * Family.parse receives the whole config.json object and reads `text_config` itself, and its ModelArch names its
 * own tensors (`embeddingName`, `requiredTensors`) with whatever prefix its files use.
 */
import { ARTIFACT_LIMITS, readJsonFile } from '../artifact-limits.js';
import { join } from 'node:path';
import { formatError } from '../../errors.js';
import type { Family, ModelArch } from './family.js';
import { qwen3MoeFamily } from './qwen3-moe.js';
import { qwen3Family } from './qwen3.js';
import { qwen35Family } from './qwen3_5.js';
import { qwen35MoeFamily } from './qwen3_5_moe.js';

const FAMILIES: readonly Family[] = [qwen3Family, qwen3MoeFamily, qwen35Family, qwen35MoeFamily];

/** model_types we know and refuse, with the reason (a family added above must leave this list). */
const NOT_SUPPORTED: Record<string, string> = {
  qwen2: 'Qwen2 checkpoints have no q_norm/k_norm and are not supported: use a Qwen3 checkpoint',
};

/** Every registered family, in registration order. */
export function families(): readonly Family[] {
  return FAMILIES;
}

export function familyFor(modelType: string): Family | undefined {
  return FAMILIES.find((f) => f.modelType === modelType);
}

/** Parse a config.json object with the family its `model_type` names. */
export function parseModelConfig(raw: unknown, where = 'config.json'): ModelArch {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw formatError(`${where}: not a JSON object`);
  const type = (raw as { model_type?: unknown }).model_type;
  if (typeof type !== 'string') throw formatError(`${where}: has no model_type string: cannot tell the model family (supported: ${FAMILIES.map((f) => f.modelType).join(', ')})`);
  const family = familyFor(type);
  if (family) return family.parse(raw as Record<string, unknown>, where);
  if (Object.hasOwn(NOT_SUPPORTED, type)) throw formatError(`${where}: ${NOT_SUPPORTED[type]}`);
  throw formatError(`${where}: unknown model_type '${type}' (supported: ${FAMILIES.map((f) => f.modelType).join(', ')})`, { modelType: type });
}

/** `<dir>/config.json`, parsed by its family. */
export function readModelConfig(dir: string): ModelArch {
  const path = join(dir, 'config.json');
  // a regular file within budget, parsed without quoting it on failure (src/model/artifact-limits.ts)
  return parseModelConfig(readJsonFile(path, ARTIFACT_LIMITS.smallJsonBytes, 'model config'), path);
}
