/**
 * Training a bundle: labeled texts + a checkpoint (any supported family) + an SAE -> a bundle directory.
 *
 *   read data -> open the fused engine (model to layer L + SAE TopK) -> featurise every text (progress)
 *   -> trainHead (seeded split, LR, calibration, thresholds, discovery rule) -> head.json, rule.json, manifest.json
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { validationError } from '../errors.js';
import { digest as dataDigest, readLabeled, type LabeledText } from '../data/labeled.js';
import { ForwardEngine } from '../engine/forward-engine.js';
import { loadTokenizer } from '../engine/tokenizer.js';
import type { ThresholdObjective } from '../head/thresholds.js';
import { DEFAULT_CALIBRATION_FRACTION, trainHead, type TrainReport } from '../head/train.js';
import type { DilutionPoint } from '../head/combiner.js';
import { stratifiedSplit } from '../head/split.js';
import { readModelConfig } from '../model/families/registry.js';
import { loadSae } from '../model/sae/load.js';
import type { Provider } from '../runtime/session.js';
import { modelDigest, saeDigest } from './artifacts.js';
import { ATTRIBUTES_FILE, attributesToJSON, defaultOpenAiCategories } from './attributes.js';
import type { Head, Pooling } from '../head/head.js';
import { FEATURIZE_BATCH_TOKENS, featurizeWithContexts } from './featurize.js';
import { FEATURE_LABELS_FILE, FeatureLabels, usedFeatures } from '../head/feature-labels.js';
import { sha256File, type HashCache } from './file-hash.js';
import { RULE_FILE, MANIFEST_FILE } from './load.js';
import { BUNDLE_FORMAT_VERSION, BundleManifest, TrainedFor } from './manifest.js';
import type { PrecisionSetting } from '../config.js';

export interface TrainBundleOptions {
  /** a .jsonl file or a directory of them, or the texts themselves */
  data: string | LabeledText[];
  modelDir: string;
  saePath: string;
  layer: number;
  k?: number;
  out: string;
  name?: string;
  seed?: number;
  calibrationFraction?: number;
  /** choose each language's threshold to meet this precision instead of maximising F1 */
  targetPrecision?: number;
  /** how thresholds are chosen when no target precision is given (default F1 of the toxic class) */
  thresholdObjective?: ThresholdObjective;
  /** the deployment's toxic share per language ('pooled' for the rest): calibration and thresholds follow it */
  prevalence?: Record<string, number>;
  /**
   * feature labels keep short snippets of the training texts: only when texts may be stored (TOXSCOPE_STORE_TEXT,
   * or licensed sample data such as the demo's); otherwise tokens only (default false)
   */
  storeText?: boolean;
  /** attribute labels derived from each text (e.g. from its source's original annotation); the file's own win */
  deriveAttributes?: (t: LabeledText) => Record<string, 0 | 1 | null>;
  /** subtracted from window logits before the max (default 0; 'fit': fitted on each head's calibration split, src/head/train.ts) */
  windowOffset?: number | 'fit';
  /** how a text's whole and part scores pool into one (default 'max-segment'; src/head/head.ts) */
  pooling?: Pooling;
  /** OpenAI category -> attribute (default: src/bundle/attributes.ts defaultOpenAiCategories) */
  openaiCategories?: Record<string, string>;
  syntheticBackbone?: boolean;
  notice?: string;
  cacheDir: string;
  provider?: Provider;
  threads?: number;
  /** weight precision of the featurisation (default auto: f32 on CPU); recorded in the manifest */
  precision?: PrecisionSetting;
  windowTokens?: number;
  windowOverlap?: number;
  batchTokens?: number;
  hashCache?: HashCache;
  /** progress of the slow parts (featurisation) */
  onProgress?: (stage: string, done: number, total: number) => void;
  log?: (line: string) => void;
}

/** An attribute needs this many positive and negative labels to get a head. */
export const MIN_ATTRIBUTE_PER_CLASS = 40;

export interface TrainBundleResult {
  dir: string;
  manifest: BundleManifest;
  report: TrainReport;
}

export async function trainBundle(o: TrainBundleOptions): Promise<TrainBundleResult> {
  const started = performance.now();
  const log = o.log ?? (() => {});
  const read = typeof o.data === 'string' ? readLabeled(o.data) : o.data;
  const texts = o.deriveAttributes ? read.map((t) => ({ ...t, attributes: { ...o.deriveAttributes!(t), ...t.attributes } })) : read;
  if (texts.length < 20) throw validationError(`train: ${texts.length} labeled texts is too few to train and calibrate a head`);
  const out = resolve(o.out);
  const { config, family } = readModelConfig(o.modelDir);
  const sae = loadSae(o.saePath, { layer: o.layer, k: o.k });
  const k = sae.k;
  log(`data: ${texts.length} texts; model ${o.modelDir} (${config.numLayers} layers, hidden ${config.hiddenSize}); SAE ${sae.format} d_sae ${sae.dSae}, k ${k}, layer ${o.layer}`);

  const engine = await ForwardEngine.open({ modelDir: o.modelDir, layer: o.layer, sae, cacheDir: o.cacheDir, provider: o.provider, threads: o.threads, precision: o.precision, warn: log });
  const precision = engine.info.weightDtype;
  const tokenizer = await loadTokenizer(o.modelDir);
  const windowTokens = o.windowTokens ?? 512;
  const windowOverlap = o.windowOverlap ?? 64;
  const seed = o.seed ?? 0;
  const langs = texts.map((t) => t.lang);
  // The heads read segments (each sentence and window encoded alone) only where their scores are calibrated: on
  // each head's calibration split (the same seeded split trainHead draws). The train split's segments would only
  // cost forward passes.
  const fraction = o.calibrationFraction ?? DEFAULT_CALIBRATION_FRACTION;
  const needsSegments = new Set(stratifiedSplit(texts.map((t) => t.label), langs, fraction, seed).holdout);
  for (const { idx, labels } of attributeLabels(texts)) for (const j of stratifiedSplit(labels, idx.map((i) => langs[i]), fraction, seed).holdout) needsSegments.add(idx[j]);
  let features, contexts;
  try {
    ({ features, contexts } = await featurizeWithContexts(engine, tokenizer, texts, sae.dSae, {
      windowTokens, overlap: windowOverlap, batchTokens: o.batchTokens ?? FEATURIZE_BATCH_TOKENS,
      segmentsFor: (i) => needsSegments.has(i),
      onProgress: (d, n) => o.onProgress?.('encoding', d, n),
    }));
  } finally {
    await engine.close();
  }

  const modelSha = modelDigest(o.modelDir, o.hashCache);
  const { resolved, sha256: saeSha } = saeDigest(o.saePath, o.layer, o.hashCache);
  const trainedFor: TrainedFor = { model_sha256: modelSha, sae_sha256: saeSha, layer: o.layer, k };
  const thresholds: ThresholdObjective = o.targetPrecision !== undefined ? { mode: 'precision', target: o.targetPrecision } : (o.thresholdObjective ?? { mode: 'f1' });
  const result = trainHead(
    { features, labels: texts.map((t) => t.label), langs, dSae: sae.dSae },
    { seed, calibrationFraction: o.calibrationFraction, thresholds, prevalence: o.prevalence, windowOffset: o.windowOffset, pooling: o.pooling, meta: { trained_for: trainedFor, attribute: 'toxicity' } },
  );
  const d = result.report.dilution;
  const points = (ps: DilutionPoint[]) => ps.map((p) => `among ${p.pads}: kept ${p.kept.toFixed(3)}, benign rise ${p.rise.toFixed(3)}`).join('; ');
  if (d) log(`head toxicity: parts penalty ${d.penalty} on the calibration split's mixtures (${points(d.points)}); without it (${points(d.tried[0].points)})`);
  log(`head toxicity: ${result.report.logistic.solver}, ${result.report.logistic.iterations} iterations, ${result.report.logistic.nonZero} non-zero weights, ${result.report.logistic.seconds.toFixed(1)} s`);
  // further attributes: same features, same fitted transform, each on the texts labeled for it
  const attributeHeads: Record<string, Head> = {};
  const attributeReports: Record<string, TrainReport> = {};
  for (const { name, idx, labels, pos } of attributeLabels(texts, true)) {
    if (pos < MIN_ATTRIBUTE_PER_CLASS || idx.length - pos < MIN_ATTRIBUTE_PER_CLASS) {
      log(`attribute ${name}: ${pos} positive and ${idx.length - pos} negative labels, fewer than ${MIN_ATTRIBUTE_PER_CLASS} of each: not trained`);
      continue;
    }
    const r = trainHead(
      { features: idx.map((i) => features[i]), labels, langs: idx.map((i) => langs[i]), dSae: sae.dSae },
      { seed, calibrationFraction: o.calibrationFraction, thresholds, fittedTransform: result.head.transform, windowOffset: o.windowOffset, pooling: o.pooling, meta: { trained_for: trainedFor, attribute: name } },
    );
    attributeHeads[name] = r.head;
    attributeReports[name] = r.report;
    log(`head ${name}: ${idx.length} labeled texts (${pos} positive) in ${[...new Set(idx.map((i) => langs[i]))].sort().join(', ')}; calibration-split macro-F1 ${r.report.calibrated.overall.macro_f1?.toFixed(3) ?? 'n/a'}`);
  }
  const attributeNames = Object.keys(attributeHeads);
  const openaiCategories = o.openaiCategories ?? defaultOpenAiCategories(attributeNames);
  for (const [category, attribute] of Object.entries(openaiCategories))
    if (attribute !== 'toxicity' && !(attribute in attributeHeads)) throw validationError(`openai categories: ${category} maps to ${attribute}, which was not trained`);

  mkdirSync(out, { recursive: true });
  const headBytes = Buffer.from(JSON.stringify(result.head.toJSON()));
  writeFileSync(join(out, 'head.json'), headBytes);
  writeFileSync(join(out, RULE_FILE), JSON.stringify(result.rule.toJSON()));
  // feature labels: every feature some head reads, with its top contexts (snippets only where text may be kept)
  const used = new Set<number>();
  for (const h of [result.head, ...Object.values(attributeHeads)]) for (const f of usedFeatures(h.weights, h.transform.dSae, h.transform.parts.length)) used.add(f);
  const labels = FeatureLabels.fromRecord(contexts.labels(used, { snippets: o.storeText ?? false }), o.storeText ?? false);
  const labelsBytes = Buffer.from(JSON.stringify(labels.toJSON()));
  writeFileSync(join(out, FEATURE_LABELS_FILE), labelsBytes);
  log(`feature labels: ${labels.features.size} features${o.storeText ? ' with snippets' : ' (tokens only: texts are not stored)'}`);
  const attributesBytes = attributeNames.length ? Buffer.from(JSON.stringify(attributesToJSON(attributeHeads))) : undefined;
  if (attributesBytes) writeFileSync(join(out, ATTRIBUTES_FILE), attributesBytes);
  const languages = [...new Set(texts.map((t) => t.lang))].sort();
  const files = typeof o.data === 'string' ? [...new Set(texts.map((t) => t.file))].map((f) => ({ path: f, n: texts.filter((t) => t.file === f).length })) : [];
  const calibrated = result.report.calibrated;
  const manifest: BundleManifest = {
    format: 'toxscope-bundle',
    format_version: BUNDLE_FORMAT_VERSION,
    name: o.name ?? 'toxscope',
    version: `${o.name ?? 'toxscope'}-${new Date().toISOString().slice(0, 10)}-${createHash('sha256').update(headBytes).digest('hex').slice(0, 8)}`,
    created_at: new Date().toISOString(),
    synthetic_backbone: o.syntheticBackbone ?? false,
    ...(o.notice ? { notice: o.notice } : {}),
    model: { path: pathFrom(out, o.modelDir), family, sha256: modelSha, num_layers: config.numLayers, hidden_size: config.hiddenSize },
    sae: { path: pathFrom(out, o.saePath), format: resolved.format, sha256: saeSha, d_sae: sae.dSae, d_model: sae.dModel },
    layer: o.layer,
    k,
    precision,
    head: { path: 'head.json', sha256: createHash('sha256').update(headBytes).digest('hex') },
    ...(attributesBytes && { attributes: { path: ATTRIBUTES_FILE, sha256: createHash('sha256').update(attributesBytes).digest('hex'), names: attributeNames } }),
    openai_categories: openaiCategories,
    feature_labels: { path: FEATURE_LABELS_FILE, sha256: createHash('sha256').update(labelsBytes).digest('hex') },
    training: {
      data_digest: dataDigest(texts),
      files: files.map((f) => ({ path: f.path, n: f.n, sha256: sha256File(f.path, o.hashCache) })),
      seed,
      n_train: result.report.split.train,
      n_calibration: result.report.split.calibration,
      languages,
      seconds: (performance.now() - started) / 1000,
    },
    metrics: {
      calibration_split: calibrated, uncalibrated: result.report.uncalibrated, rule: result.report.rule, thresholds: result.report.thresholds,
      window_tokens: windowTokens, window_overlap: windowOverlap, prior: result.head.prior,
      ...(d && { dilution: { parts_penalty: d.penalty, calibration_mixtures: d.points, without_penalty: d.tried[0].points } }),
      attributes: Object.fromEntries(Object.entries(attributeReports).map(([n, r]) => [n, { calibration_split: r.calibrated, thresholds: r.thresholds, split: r.split }])),
    },
    baseline_f1: Object.fromEntries(Object.entries(calibrated.languages).map(([l, m]) => [l, m.f1 ?? 0])),
  };
  writeFileSync(join(out, MANIFEST_FILE), JSON.stringify(manifest, null, 2));
  return { dir: out, manifest, report: result.report };
}

/** Each attribute's labeled texts (indices into texts) and labels; only those with enough of each class unless `all`. */
function attributeLabels(texts: readonly LabeledText[], all = false): { name: string; idx: number[]; labels: number[]; pos: number }[] {
  const out = [];
  for (const name of [...new Set(texts.flatMap((t) => Object.keys(t.attributes ?? {})))].sort()) {
    const idx = texts.flatMap((t, i) => (t.attributes?.[name] === 0 || t.attributes?.[name] === 1 ? [i] : []));
    const labels = idx.map((i) => texts[i].attributes![name] as number);
    const pos = labels.filter((l) => l === 1).length;
    if (all || (pos >= MIN_ATTRIBUTE_PER_CLASS && idx.length - pos >= MIN_ATTRIBUTE_PER_CLASS)) out.push({ name, idx, labels, pos });
  }
  return out;
}

/**
 * Locations are stored relative to the bundle directory, so a bundle moved together with its model keeps
 * loading; a bundle moved alone finds its model and SAE by name in TOXSCOPE_MODEL_DIR, verified by content
 * hash (src/bundle/locate.ts). An absolute path would name a directory of the machine it was trained on.
 */
function pathFrom(bundleDir: string, p: string): string {
  return relative(bundleDir, resolve(p)).split(sep).join('/') || '.';
}
