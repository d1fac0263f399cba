/**
 * The bundle: one directory holding everything a running service needs.
 *
 *   <bundle>/manifest.json   provenance + what the head was trained for (this schema)
 *   <bundle>/head.json       the calibrated head with per-language thresholds (src/head)
 *   <bundle>/model/          optional: the checkpoint (any supported family) (or manifest.model.path points elsewhere)
 *   <bundle>/sae/            optional: the SAE files (or manifest.sae.path points elsewhere)
 *
 * Model and SAE are named by content hash (sha256) and a location relative to the bundle directory (or absolute,
 * in bundles written before that): the location is a hint, the hash decides (src/bundle/locate.ts searches the
 * bundle and TOXSCOPE_MODEL_DIR when the location does not hold them).
 */
import { z } from 'zod';

export const BUNDLE_FORMAT_VERSION = 1;

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'a lowercase hex sha256');

export const BundleManifestSchema = z.object({
  format: z.literal('toxscope-bundle'),
  format_version: z.literal(BUNDLE_FORMAT_VERSION),
  name: z.string().min(1),
  version: z.string().min(1),
  created_at: z.string(),
  /** true for the embedded demo: a seeded random Qwen3-architecture backbone, not Qwen3's weights */
  synthetic_backbone: z.boolean(),
  notice: z.string().optional(),
  model: z.object({
    path: z.string().min(1),
    /** the checkpoint's model family (config.json model_type: qwen3, qwen3_moe, ...); absent in bundles made before families */
    family: z.string().min(1).optional(),
    /** digest over config.json and every safetensors file (src/bundle/file-hash.ts sha256Files) */
    sha256,
    num_layers: z.number().int().positive(),
    hidden_size: z.number().int().positive(),
  }),
  sae: z.object({
    path: z.string().min(1),
    format: z.enum(['qwen-scope', 'saelens', 'sparsify']),
    sha256,
    d_sae: z.number().int().positive(),
    d_model: z.number().int().positive(),
  }),
  layer: z.number().int().nonnegative(),
  k: z.number().int().positive(),
  /** the weight precision the head's training features were computed at (absent in older bundles: f32) */
  precision: z.enum(['f32', 'f16', 'int8']).optional(),
  head: z.object({ path: z.string().min(1), sha256 }),
  /** heads of further attributes (src/bundle/attributes.ts), trained on the same features as the toxicity head */
  attributes: z.object({ path: z.string().min(1), sha256, names: z.array(z.string()) }).optional(),
  /**
   * /v1/moderations: which attribute's score each OpenAI category carries (categories not named stay
   * false / 0: unscored). Absent: harassment and hate carry toxicity.
   */
  openai_categories: z.record(z.string(), z.string()).optional(),
  /** feature labels: top activating contexts of the head's features (src/head/feature-labels.ts) */
  feature_labels: z.object({ path: z.string().min(1), sha256 }).optional(),
  training: z.object({
    data_digest: z.string(),
    files: z.array(z.object({ path: z.string(), sha256, n: z.number().int().nonnegative() })),
    seed: z.number().int(),
    n_train: z.number().int().nonnegative(),
    n_calibration: z.number().int().nonnegative(),
    languages: z.array(z.string()),
    seconds: z.number().nonnegative().optional(),
  }),
  /** metrics measured on the calibration split at training time; baseline F1 per language feeds drift */
  metrics: z.record(z.string(), z.unknown()),
  baseline_f1: z.record(z.string(), z.number()),
});

export type BundleManifest = z.infer<typeof BundleManifestSchema>;

/** What a head must have been trained for: the exact model, SAE, layer and k. */
export interface TrainedFor {
  model_sha256: string;
  sae_sha256: string;
  layer: number;
  k: number;
}
