/**
 * Reading a bundle: manifest -> head (+ discovery rule) -> model and SAE located and verified -> SAE loaded.
 * Every check that can refuse a bundle runs here, before any graph is built, so a reload that fails
 * leaves the running bundle untouched.
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { formatError } from '../errors.js';
import { DiscoveryRule } from '../head/discovery.js';
import { describeZodError } from '../head/encoding.js';
import { Head } from '../head/head.js';
import { ARTIFACT_LIMITS, parseJsonText, readBoundedFile } from '../model/artifact-limits.js';
import { readModelConfig } from '../model/families/registry.js';
import { FeatureLabels } from '../head/feature-labels.js';
import { loadSae } from '../model/sae/load.js';
import type { TopKSae } from '../model/sae/types.js';
import { modelDigest, saeDigest } from './artifacts.js';
import { attributesFromJSON, defaultOpenAiCategories } from './attributes.js';
import type { HashCache } from './file-hash.js';
import { locateArtifact } from './locate.js';
import { BundleManifest, BundleManifestSchema, TrainedFor } from './manifest.js';

export const MANIFEST_FILE = 'manifest.json';
export const RULE_FILE = 'rule.json';

export interface Bundle {
  dir: string;
  manifest: BundleManifest;
  head: Head;
  /** the discovery rule trained beside the head (for evaluation and explanations), when present */
  rule: DiscoveryRule | null;
  /** further attributes' heads (toxicity's is `head`) */
  attributes: Record<string, Head>;
  /** OpenAI moderation category -> attribute whose score it carries */
  openaiCategories: Record<string, string>;
  /** what the head's features fire on (top contexts, labels), when the bundle has them */
  featureLabels: FeatureLabels | null;
  modelDir: string;
  saePath: string;
  sae: TopKSae;
}

export interface ReadBundleOptions {
  hashCache?: HashCache;
  /** directories searched for the model and SAE by name when the manifest's location does not hold them (TOXSCOPE_MODEL_DIR) */
  modelDirs?: readonly string[];
}

export function readBundle(dir: string, opts: ReadBundleOptions = {}): Bundle {
  const bundleDir = resolve(dir);
  const manifestPath = join(bundleDir, MANIFEST_FILE);
  if (!existsSync(manifestPath)) throw formatError(`${bundleDir}: not a bundle (no ${MANIFEST_FILE})`);
  const manifest = parseJsonFile(manifestPath, (raw) => {
    const r = BundleManifestSchema.safeParse(raw);
    if (!r.success) throw formatError(describeZodError(manifestPath, r.error));
    return r.data;
  });

  const headPath = inBundle(bundleDir, manifest.head.path);
  const headBytes = readOrFail(headPath, 'head', ARTIFACT_LIMITS.headJsonBytes);
  const headSha = createHash('sha256').update(headBytes).digest('hex');
  if (headSha !== manifest.head.sha256) throw formatError(`${headPath}: content does not match the manifest's sha256 (edited or corrupted head)`);
  const head = Head.fromJSON(parseJson(headPath, headBytes), headPath);
  let attributes: Record<string, Head> = {};
  if (manifest.attributes) {
    const path = inBundle(bundleDir, manifest.attributes.path);
    const bytes = readOrFail(path, 'attributes', ARTIFACT_LIMITS.headJsonBytes); // a head per attribute
    if (createHash('sha256').update(bytes).digest('hex') !== manifest.attributes.sha256) throw formatError(`${path}: content does not match the manifest's sha256 (edited or corrupted attribute heads)`);
    attributes = attributesFromJSON(parseJson(path, bytes), path);
    for (const [name, h] of Object.entries(attributes))
      if (h.transform.dSae !== head.transform.dSae) throw formatError(`${path}: heads.${name} expects ${h.transform.dSae} SAE features, the toxicity head ${head.transform.dSae}`);
  }
  const openaiCategories = manifest.openai_categories ?? defaultOpenAiCategories(Object.keys(attributes));
  for (const [category, attribute] of Object.entries(openaiCategories))
    if (attribute !== 'toxicity' && !(attribute in attributes)) throw formatError(`${manifestPath}: openai_categories.${category} names ${attribute}, which the bundle does not score`);
  let featureLabels: FeatureLabels | null = null;
  if (manifest.feature_labels) {
    const path = inBundle(bundleDir, manifest.feature_labels.path);
    const bytes = readOrFail(path, 'feature labels', ARTIFACT_LIMITS.headJsonBytes);
    if (createHash('sha256').update(bytes).digest('hex') !== manifest.feature_labels.sha256) throw formatError(`${path}: content does not match the manifest's sha256 (edited or corrupted feature labels)`);
    featureLabels = FeatureLabels.fromJSON(parseJson(path, bytes), path);
  }
  const rulePath = join(bundleDir, RULE_FILE);
  const rule = existsSync(rulePath) ? DiscoveryRule.fromJSON(parseJson(rulePath, readOrFail(rulePath, 'rule', ARTIFACT_LIMITS.headJsonBytes)), rulePath) : null;

  const trained = head.meta.trained_for as TrainedFor | undefined;
  if (!trained) throw formatError(`${headPath}: head.meta.trained_for is missing: cannot tell which model and SAE the head was trained for`);
  if (trained.layer !== manifest.layer || trained.k !== manifest.k)
    throw formatError(`${bundleDir}: the head was trained for layer ${trained.layer}, k ${trained.k} but the bundle says layer ${manifest.layer}, k ${manifest.k}`);

  // The head is bound to content hashes; the manifest's locations are hints (src/bundle/locate.ts).
  if (manifest.model.sha256 !== trained.model_sha256 || manifest.sae.sha256 !== trained.sae_sha256)
    throw formatError(`${bundleDir}: the manifest's model/SAE hashes differ from those the head was trained for: retrain the head or restore the manifest`);
  const searchDirs = opts.modelDirs ?? [];
  const modelDir = locateArtifact(
    { what: 'model', path: manifest.model.path, sha256: trained.model_sha256, tailComponents: 1 },
    { bundleDir, searchDirs, digest: (p) => modelDigest(p, opts.hashCache) },
  ).path;
  const { config, family } = readModelConfig(modelDir);
  if (manifest.model.family !== undefined && manifest.model.family !== family)
    throw formatError(`${bundleDir}: the manifest says the model is a ${manifest.model.family} checkpoint but ${modelDir}/config.json is ${family}`);
  checkTokenizerFiles(modelDir);
  if (manifest.layer >= config.numLayers)
    throw formatError(`${bundleDir}: layer ${manifest.layer} is past the model's depth (${config.numLayers} layers)`);

  const saePath = locateArtifact(
    { what: 'SAE', path: manifest.sae.path, sha256: trained.sae_sha256, tailComponents: /\.pt$/.test(manifest.sae.path) ? 2 : 1 },
    { bundleDir, searchDirs, digest: (p) => saeDigest(p, manifest.layer, opts.hashCache).sha256 },
  ).path;
  const sae = loadSae(saePath, { layer: manifest.layer, k: manifest.k });
  if (sae.dModel !== config.hiddenSize)
    throw formatError(`${saePath}: SAE d_model ${sae.dModel} does not match the model's hidden size ${config.hiddenSize}`);
  if (sae.dSae !== head.transform.dSae)
    throw formatError(`${bundleDir}: the head expects ${head.transform.dSae} SAE features but the SAE has ${sae.dSae}`);
  return { dir: bundleDir, manifest, head, rule, attributes, openaiCategories, featureLabels, modelDir, saePath, sae };
}

/**
 * The checkpoint's tokenizer files are read on the main thread once the bundle is accepted (src/engine/tokenizer.ts):
 * here, off it, they must be regular files within budget (a symlink to /dev/zero would be read without end).
 */
function checkTokenizerFiles(modelDir: string): void {
  for (const name of ['tokenizer.json', 'tokenizer_config.json']) {
    const p = join(modelDir, name);
    if (!existsSync(p)) continue;
    const st = statSync(p);
    if (!st.isFile()) throw formatError(`${p}: not a regular file`);
    if (st.size > ARTIFACT_LIMITS.tokenizerJsonBytes) throw formatError(`${p}: ${st.size} bytes, more than the ${ARTIFACT_LIMITS.tokenizerJsonBytes}-byte limit`);
  }
}

function inBundle(bundleDir: string, p: string): string {
  return isAbsolute(p) ? p : join(bundleDir, p);
}

/** A regular file within its size budget (never /dev/zero behind a symlink). */
function readOrFail(path: string, what: string, maxBytes: number): Buffer {
  return readBoundedFile(path, maxBytes, `bundle's ${what}`);
}

/** JSON whose parse errors never quote the file's text. */
function parseJson(path: string, bytes: Buffer): unknown {
  return parseJsonText(bytes.toString('utf8'), path);
}

function parseJsonFile<T>(path: string, validate: (raw: unknown) => T): T {
  return validate(parseJson(path, readOrFail(path, 'manifest', ARTIFACT_LIMITS.smallJsonBytes)));
}

