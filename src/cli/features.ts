/**
 * `toxscope features`: SAE codes and per-text firing rates for token ids or texts, through the fused
 * engine (Qwen3 to layer L + TopK encoder in one graph), written as safetensors for inspection:
 *   code          float32 [B, T, d_sae]  dense, scattered from the top-k (zeros at pads)
 *   firing_rates  float32 [B, d_sae]     fraction of each text's real tokens on which a feature fires
 *   attention_mask int64  [B, T]
 * With --check, the same residuals are also encoded by the plain-TypeScript encoder and compared.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ensureDemoBundle } from '../bundle/demo/demo-bundle.js';
import { jsonHashCache } from '../bundle/file-hash.js';
import { readBundle } from '../bundle/load.js';
import { progressBar } from './progress.js';
import { denseRates, textFeatures } from '../engine/features.js';
import { ForwardEngine } from '../engine/forward-engine.js';
import type { Padding } from '../engine/padding.js';
import { loadTokenizer } from '../engine/tokenizer.js';
import type { TopKBatch } from '../engine/types.js';
import { writeSafetensors } from '../model/safetensors.js';
import { encodeTopK } from '../model/sae/encode.js';
import { loadSae } from '../model/sae/load.js';
import type { TopKSae } from '../model/sae/types.js';
import type { Provider } from '../runtime/session.js';
import { UsageError, parseChoice, parseFlags, parseIntFlag, requireString, parseEngineFlags } from './args.js';
import { cliEnvironment } from './environment.js';
import type { CliIO, Command } from './main.js';
import { inputRows, parseIdsFlag } from './residual.js';

const USAGE = `usage: toxscope features --describe [--bundle <dir>] [--feature <id> ...] [--attribute <name>] [--top <n>] [--json] [--data-dir <dir>]
       toxscope features --model <checkpoint dir> --sae <file or dir> --layer <L> --out <file.safetensors>
                         [--k <k>] [--ids '<JSON list of token-id lists>'] [--text '<string>' ...]
                         [--padding right|left] [--check] [--cache-dir <dir>] [--threads <n>] [--provider cpu|cuda]

  --model      Hugging Face checkpoint directory (qwen3, qwen3_moe, qwen3_5, ...: config.json + safetensors; a
               Qwen3.5 directory needs its tokenizer.json)
  --sae        Qwen-Scope layer{L}.sae.pt (or its directory), a SAELens or a sparsify SAE directory
  --layer      0-based decoder layer the SAE reads (must agree with the SAE's files)
  --k          top-k for Qwen-Scope files (no config); default from a release name like '...-L0_50'
  --ids        token ids, e.g. '[[9707, 1879], [151643]]'
  --text       a text to tokenize (repeatable); rows from --ids come first, then one row per --text
  --padding    how rows of different lengths are padded (default right)
  --check      also encode the residuals with the TypeScript reference encoder and report the difference
  --out        output: code float32 [B, T, d_sae], firing_rates float32 [B, d_sae], attention_mask int64 [B, T]
  --cache-dir  where built graphs are cached (default $TOXSCOPE_DATA_DIR/graph-cache, else .toxscope/graph-cache)
  --threads    onnxruntime intra-op threads (default: one per core)
  --provider   execution provider (default cpu; cuda falls back to cpu with a warning)

  --describe   print what the bundle's features fire on in its training data: for each feature (the head's --top
               largest weights, default 20, or each --feature id) its label, weight, top tokens by language and
               snippets (snippets only where the bundle was allowed to keep text); --bundle defaults to the demo`;

const FLAGS = {
  model: { type: 'string' },
  sae: { type: 'string' },
  layer: { type: 'string' },
  k: { type: 'string' },
  ids: { type: 'string' },
  text: { type: 'string', multiple: true },
  padding: { type: 'string', default: 'right' },
  check: { type: 'boolean', default: false },
  out: { type: 'string' },
  'cache-dir': { type: 'string' },
  threads: { type: 'string' },
  provider: { type: 'string', default: 'cpu' },
  describe: { type: 'boolean', default: false },
  bundle: { type: 'string' },
  feature: { type: 'string', multiple: true },
  attribute: { type: 'string', default: 'toxicity' },
  top: { type: 'string', default: '20' },
  json: { type: 'boolean', default: false },
  'data-dir': { type: 'string', default: '.toxscope' },
} as const;

/** Dense float32 [B, T, dSae] from top-k codes; pad positions stay zero. */
export function scatterCodes(top: TopKBatch, dSae: number): Float32Array {
  const out = new Float32Array(top.batch * top.seqLen * dSae);
  for (let bt = 0; bt < top.batch * top.seqLen; bt++) {
    if (!top.mask[bt]) continue;
    for (let j = 0; j < top.k; j++) {
      const v = top.values[bt * top.k + j];
      if (v > 0) out[bt * dSae + top.indices[bt * top.k + j]] = v;
    }
  }
  return out;
}

async function run(argv: string[], io: CliIO): Promise<number> {
  const f = parseFlags(argv, FLAGS);
  if (f.describe) return describe(f, io);
  const modelDir = requireString(f, 'model');
  const saePath = requireString(f, 'sae');
  const layer = parseIntFlag(requireString(f, 'layer'), 'layer');
  const k = f.k === undefined ? undefined : parseIntFlag(f.k as string, 'k', 1);
  const out = requireString(f, 'out');
  const padding = parseChoice(f.padding as string, 'padding', ['right', 'left'] as const satisfies readonly Padding[]);
  const { provider, threads } = parseEngineFlags(f);
  const rows = await inputRows(f, modelDir);

  const sae = loadSae(saePath, { layer, k });
  const engine = await ForwardEngine.open({ modelDir, layer, sae, cacheDir: typeof f['cache-dir'] === 'string' ? resolve(f['cache-dir']) : join(cliEnvironment(undefined, io).dataDir, 'graph-cache'), provider, threads, warn: (m) => io.stderr(`warning: ${m}\n`) });
  try {
    const top = await engine.runTopK(rows, padding);
    const { batch: B, seqLen: T } = top;
    const S = sae.dSae;
    const rates = new Float32Array(B * S);
    textFeatures(top).forEach((tf, b) => rates.set(denseRates(tf, S), b * S));
    mkdirSync(dirname(resolve(out)), { recursive: true });
    writeSafetensors(
      out,
      {
        code: { dtype: 'F32', shape: [B, T, S], data: scatterCodes(top, S) },
        firing_rates: { dtype: 'F32', shape: [B, S], data: rates },
        attention_mask: { dtype: 'I64', shape: [B, T], data: BigInt64Array.from(top.mask, (m) => BigInt(m)) },
      },
      { layer: String(layer), k: String(sae.k), padding, sae_format: sae.format, sae: resolve(sae.source), model: resolve(modelDir), provider: engine.info.provider },
    );
    io.stdout(`wrote ${out}: code [${B}, ${T}, ${S}], firing_rates [${B}, ${S}], attention_mask [${B}, ${T}] (${sae.format} SAE, layer ${layer}, k ${sae.k}, ${padding} padding, ${engine.info.provider})\n`);
    if (f.check) io.stdout(await checkAgainstReference(engine, sae, rows, padding, top));
    return 0;
  } finally {
    await engine.close();
  }
}

/** Encode the engine's own residuals with the TS encoder and compare with the fused codes on real tokens. */
async function checkAgainstReference(engine: ForwardEngine, sae: TopKSae, rows: number[][], padding: Padding, top: TopKBatch): Promise<string> {
  const r = await engine.runResidual(rows, padding);
  const ref = encodeTopK(sae, r.resid); // [B*T, k]
  const S = sae.dSae;
  const fused = scatterCodes(top, S);
  const mine = scatterCodes({ ...top, values: ref.values, indices: ref.indices }, S);
  let maxDiff = 0;
  let setsDiffer = 0;
  let tokens = 0;
  for (let bt = 0; bt < top.batch * top.seqLen; bt++) {
    if (!top.mask[bt]) continue;
    tokens++;
    let differ = false;
    for (let f = 0; f < S; f++) {
      const a = fused[bt * S + f];
      const b = mine[bt * S + f];
      maxDiff = Math.max(maxDiff, Math.abs(a - b));
      if (a > 0 !== b > 0) differ = true;
    }
    if (differ) setsDiffer++;
  }
  return `check: fused vs TypeScript encoder on ${tokens} real tokens: max |code difference| ${maxDiff.toExponential(2)}, fired sets differ on ${setsDiffer} tokens\n`;
}

/** `--describe`: feature labels of a bundle, strongest weights first (or the features asked for). */
async function describe(f: Record<string, unknown>, io: CliIO): Promise<number> {
  const dataDir = resolve(f['data-dir'] as string);
  const log = (line: string) => io.stderr(`${line}\n`);
  const progress = progressBar(io.stderr);
  const dir = (f.bundle as string | undefined) ?? (await ensureDemoBundle({ dataDir, log, onProgress: progress.update }));
  progress.done();
  const bundle = readBundle(dir, { hashCache: jsonHashCache(join(dataDir, 'hash-cache.json')) });
  if (!bundle.featureLabels) throw new UsageError(`${dir}: this bundle has no feature labels (train it again with this version)`);
  const attribute = f.attribute as string;
  const head = attribute === 'toxicity' ? bundle.head : bundle.attributes[attribute];
  if (!head) throw new UsageError(`--attribute: the bundle scores toxicity${Object.keys(bundle.attributes).map((a) => `, ${a}`).join('')}; not ${attribute}`);
  const { dSae, parts } = head.transform;
  const weightOf = (id: number) => parts.reduce((s, _, b) => s + head.weights[b * dSae + id], 0);
  let ids: number[];
  if (Array.isArray(f.feature) && f.feature.length > 0) ids = f.feature.map((x) => parseIntFlag(x, 'feature'));
  else {
    const top = parseIntFlag(f.top as string, 'top', 1);
    ids = [...bundle.featureLabels.features.keys()].sort((a, b) => weightOf(b) - weightOf(a) || a - b).slice(0, top);
  }
  const rows = ids.map((id) => ({ id, weight: weightOf(id), ...(bundle.featureLabels!.get(id) ?? { label: '(never fired in the training data)', tokens: [], byLanguage: {} }) }));
  if (f.json) {
    io.stdout(`${JSON.stringify({ bundle: bundle.manifest.version, attribute, features: rows }, null, 2)}\n`);
    return 0;
  }
  io.stdout(`${bundle.manifest.version}: ${attribute} head, ${rows.length} features (weight summed over the head's parts)\n`);
  for (const r of rows) {
    io.stdout(`\n#${r.id}  weight ${r.weight.toFixed(3)}  ${r.label}\n`);
    for (const [lang, b] of Object.entries(r.byLanguage).sort((a, b) => b[1].fired - a[1].fired))
      io.stdout(`    ${lang}: fired in ${b.fired} texts; ${b.tokens.map((t) => JSON.stringify(t)).join(' ')}\n`);
    for (const s of r.snippets ?? []) io.stdout(`    > ${s}\n`);
  }
  return 0;
}

export const featuresCommand: Command = {
  name: 'features',
  summary: 'Write SAE codes and per-text firing rates for token ids or texts (safetensors), through the fused engine.',
  usage: USAGE,
  run,
};
