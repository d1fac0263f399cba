/**
 * `toxscope train`: labeled texts + checkpoint + SAE -> a bundle directory (head, thresholds, manifest).
 * Without --model/--sae it trains on the demo backbone (synthetic), building it first if needed.
 */
import { join } from 'node:path';
import { jsonHashCache } from '../bundle/file-hash.js';
import { trainBundle } from '../bundle/train-bundle.js';
import { DEMO_NOTICE, DEMO_RECIPE, ensureDemoBundle } from '../bundle/demo/demo-bundle.js';
import { readBundle } from '../bundle/load.js';
import type { Provider } from '../runtime/session.js';
import { loadConfig, PRECISION_SETTINGS } from '../config.js';
import { UsageError, parseChoice, parseFlags, parseIntFlag, requireString, parseEngineFlags } from './args.js';
import type { CliIO, Command } from './main.js';
import { POOLINGS } from '../head/head.js';
import { cliEnvironment } from './environment.js';
import { progressBar } from './progress.js';

const USAGE = `usage: toxscope train --data <jsonl file or dir> --out <bundle dir>
                      [--model <checkpoint dir> --sae <SAE file or dir> --layer <L> [--k <k>]]
                      [--seed <n>] [--calibration-fraction <0..1>] [--target-precision <0..1>] [--name <name>]
                      [--prevalence pooled=0.3,de=0.34,tr=0.2] [--store-text] [--pooling max-segment|combined|sentences|whole]
                      [--data-dir <dir>] [--threads <n>] [--provider cpu|cuda] [--precision auto|f32|f16|int8]

  --data                labeled JSON Lines: {"text", "label": 0|1, "lang"} per line (a file or a directory of *.jsonl)
  --out                 the bundle directory to write
  --model/--sae/--layer the checkpoint (any supported family), the SAE (Qwen-Scope layer{L}.sae.pt, SAELens or sparsify) and its layer;
                        without them the demo's SYNTHETIC backbone and SAE are used
  --k                   top-k for Qwen-Scope files (default: from a release name like '...-L0_50')
  --seed                seed of the explicit train/calibration split (default 0)
  --calibration-fraction  share held out for calibration and thresholds (default 0.25)
  --target-precision    choose per-language thresholds to reach this precision (default: maximise F1)
  --prevalence          the deployment's toxic share per language (and 'pooled' for the rest): calibration shifts
                        to it and thresholds are chosen at it (default: the calibration split's own shares)
  --pooling             how a text's score reads its parts (sentences and 16-token windows, each scored alone):
                        max-segment (default) the most toxic of the text and its parts; combined: that max less a
                        penalty for the number of parts, chosen on the calibration split so that a toxic text among
                        3 / 30 benign ones stays flagged (>= 90% / 80%) while benign ones rise <= 2 points (the
                        choice and its trade-off are printed); sentences; whole (the whole text only: dilutable)
  --store-text          feature labels keep short snippets of the training texts (default: the TOXSCOPE_STORE_TEXT
                        setting; without it only tokens are kept)

  --data-dir            built graphs and the demo live here (default $TOXSCOPE_DATA_DIR, else .toxscope)
  --precision           weight precision of the featurisation (default auto: f32 on CPU), recorded in the bundle

  Attributes: a line may carry "attributes": {"insult": 0|1|null, ...}; each attribute with at least 40 labels of
  each class gets its own calibrated head on the same features.`;

const FLAGS = {
  data: { type: 'string' },
  out: { type: 'string' },
  model: { type: 'string' },
  sae: { type: 'string' },
  layer: { type: 'string' },
  k: { type: 'string' },
  seed: { type: 'string', default: '0' },
  'calibration-fraction': { type: 'string' },
  'target-precision': { type: 'string' },
  prevalence: { type: 'string' },
  'store-text': { type: 'boolean' },
  pooling: { type: 'string', default: 'max-segment' },
  name: { type: 'string' },
  'data-dir': { type: 'string' },
  threads: { type: 'string' },
  provider: { type: 'string', default: 'cpu' },
  precision: { type: 'string', default: 'auto' },
} as const;

export function parseFraction(raw: string | undefined, flag: string): number | undefined {
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (!Number.isFinite(v) || v <= 0 || v >= 1) throw new UsageError(`--${flag} must be a number strictly between 0 and 1, got '${raw}'`);
  return v;
}

export const trainCommand: Command = {
  name: 'train',
  summary: 'Train a calibrated head with per-language thresholds and write a bundle.',
  usage: USAGE,
  async run(argv: string[], io: CliIO): Promise<number> {
    const f = parseFlags(argv, FLAGS);
    const data = requireString(f, 'data');
    const out = requireString(f, 'out');
    const { dataDir, modelDirs } = cliEnvironment(f['data-dir'], io);
    const { provider, threads } = parseEngineFlags(f);
    const given = [f.model, f.sae, f.layer].filter((v) => v !== undefined).length;
    if (given !== 0 && given !== 3) throw new UsageError('--model, --sae and --layer go together (or leave all three out for the demo backbone)');
    const seed = parseIntFlag(f.seed as string, 'seed', 0);
    const calibrationFraction = parseFraction(f['calibration-fraction'] as string | undefined, 'calibration-fraction');
    const targetPrecision = parseFraction(f['target-precision'] as string | undefined, 'target-precision');
    const prevalence = parsePrevalence(f.prevalence as string | undefined);
    const pooling = parseChoice(f.pooling as string, 'pooling', POOLINGS);
    const storeText = (f['store-text'] as boolean | undefined) ?? loadConfig({ env: process.env }).storeText;
    const progress = progressBar(io.stderr);
    const log = (line: string) => io.stderr(`${line}\n`);
    let modelDir: string, saePath: string, layer: number, k: number | undefined, synthetic = false;
    if (given === 3) {
      modelDir = f.model as string;
      saePath = f.sae as string;
      layer = parseIntFlag(f.layer as string, 'layer', 0);
      k = f.k === undefined ? undefined : parseIntFlag(f.k as string, 'k', 1);
    } else {
      const demo = readBundle(await ensureDemoBundle({ dataDir, provider, threads, log, onProgress: progress.update }), { modelDirs });
      progress.done();
      io.stderr(`${DEMO_NOTICE}\n`);
      modelDir = demo.modelDir;
      saePath = demo.saePath;
      layer = DEMO_RECIPE.layer;
      k = DEMO_RECIPE.k;
      synthetic = true;
    }
    const result = await trainBundle({
      data, out, modelDir, saePath, layer, k,
      seed, calibrationFraction, targetPrecision, prevalence, storeText,
      pooling,
      name: f.name as string | undefined,
      syntheticBackbone: synthetic,
      notice: synthetic ? DEMO_NOTICE : undefined,
      cacheDir: join(dataDir, 'graph-cache'),
      provider, threads,
      precision: parseChoice(f.precision as string, 'precision', PRECISION_SETTINGS),
      hashCache: jsonHashCache(join(dataDir, 'hash-cache.json')),
      log, onProgress: progress.update,
    });
    progress.done();
    const r = result.report;
    io.stdout(`bundle written to ${result.dir} (version ${result.manifest.version})\n`);
    io.stdout(`split: ${r.split.train} train / ${r.split.calibration} calibration (seed ${r.split.seed}); ${r.seconds.toFixed(1)} s for the head\n`);
    io.stdout(`calibration split, head: macro-F1 ${fmt(r.calibrated.overall.macro_f1)}, ROC-AUC ${fmt(r.calibrated.overall.roc_auc)}, ECE ${fmt(r.uncalibrated.overall.ece)} -> ${fmt(r.calibrated.overall.ece)} after calibration\n`);
    return 0;
  },
};

/** 'pooled=0.3,de=0.34' -> { pooled: 0.3, de: 0.34 } */
export function parsePrevalence(raw: string | undefined): Record<string, number> | undefined {
  if (raw === undefined) return undefined;
  const out: Record<string, number> = {};
  for (const part of raw.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([a-z]{2,3}(?:-[a-z0-9]+)*|pooled)=([0-9.]+)$/i.exec(part);
    const v = m ? Number(m[2]) : NaN;
    if (!m || !(v > 0 && v < 1)) throw new UsageError(`--prevalence: expected language=share pairs with shares strictly between 0 and 1 (e.g. pooled=0.3,de=0.34), got '${part}'`);
    out[m[1].toLowerCase()] = v;
  }
  return out;
}

const fmt = (v: number | null | undefined) => (v === null || v === undefined ? 'n/a' : v.toFixed(3));
