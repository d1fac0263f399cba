/**
 * `toxscope discover`: the Qwen-Scope method on a labeled set. Features ranked by
 * P(fires | toxic) - P(fires | non-toxic), per language and pooled, on a seeded training split; the rule
 * "toxic if any of the top-K features fires" with K chosen on the validation split.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FEATURIZE_BATCH_TOKENS, featurizeTexts } from '../bundle/featurize.js';
import { featurizeForBundle, type RunnableBundle } from '../bundle/open.js';
import { readLabeled } from '../data/labeled.js';
import { ForwardEngine } from '../engine/forward-engine.js';
import { loadTokenizer } from '../engine/tokenizer.js';
import type { TextFeatures } from '../head/text-features.js';
import { fitDiscoveryRule, type FeatureBias } from '../head/discovery.js';
import { evaluateRule } from '../head/evaluate.js';
import { pick } from '../head/groups.js';
import { stratifiedSplit } from '../head/split.js';
import { loadSae } from '../model/sae/load.js';
import type { Provider } from '../runtime/session.js';
import { UsageError, parseChoice, parseFlags, parseIntFlag, requireString, parseEngineFlags } from './args.js';
import { openBundleFlag } from './bundle-arg.js';
import { cliEnvironment } from './environment.js';
import type { CliIO, Command } from './main.js';
import { progressBar } from './progress.js';
import { parseFraction } from './train.js';

const USAGE = `usage: toxscope discover --data <jsonl file or dir> [--bundle <dir> | --model <dir> --sae <file or dir> --layer <L> [--k <k>]]
                         [--top <n>] [--max-k <n>] [--validation-fraction <0..1>] [--seed <n>] [--out <rule.json>] [--json]

  --data                 labeled JSON Lines: {"text", "label": 0|1, "lang"} per line
  --bundle               take the model and SAE of this bundle (default: the demo bundle, SYNTHETIC backbone)
  --model/--sae/--layer  or name them directly
  --top                  features listed per language (default 20)
  --max-k                largest K tried for the rule (default 256)
  --validation-fraction  share held out to choose K (default 0.25)
  --out                  write the rule as JSON (the format bundles keep in rule.json)
  --json                 print rankings, K and validation metrics as one JSON object`;

const FLAGS = {
  data: { type: 'string' },
  bundle: { type: 'string' },
  model: { type: 'string' },
  sae: { type: 'string' },
  layer: { type: 'string' },
  k: { type: 'string' },
  top: { type: 'string', default: '20' },
  'max-k': { type: 'string', default: '256' },
  'validation-fraction': { type: 'string', default: '0.25' },
  seed: { type: 'string', default: '0' },
  out: { type: 'string' },
  json: { type: 'boolean', default: false },
  'data-dir': { type: 'string' },
  threads: { type: 'string' },
  provider: { type: 'string', default: 'cpu' },
} as const;

export const discoverCommand: Command = {
  name: 'discover',
  summary: 'Rank toxicity-biased SAE features per language and fit the any-of-top-K rule.',
  usage: USAGE,
  async run(argv: string[], io: CliIO): Promise<number> {
    const f = parseFlags(argv, FLAGS);
    const texts = readLabeled(requireString(f, 'data'));
    const { provider, threads } = parseEngineFlags(f);
    const top = parseIntFlag(f.top as string, 'top', 1);
    const maxK = parseIntFlag(f['max-k'] as string, 'max-k', 1);
    const seed = parseIntFlag(f.seed as string, 'seed', 0);
    const fraction = parseFraction(f['validation-fraction'] as string, 'validation-fraction')!;
    const direct = [f.model, f.sae, f.layer].filter((v) => v !== undefined).length;
    if (direct !== 0 && direct !== 3) throw new UsageError('--model, --sae and --layer go together');
    if (direct === 3 && f.bundle !== undefined) throw new UsageError('give either --bundle or --model/--sae/--layer, not both');

    const progress = progressBar(io.stderr);
    const onProgress = (d: number, n: number) => progress.update('encoding', d, n);
    let features: TextFeatures[];
    let dSae: number;
    if (direct === 3) {
      const layer = parseIntFlag(f.layer as string, 'layer', 0);
      const sae = loadSae(f.sae as string, { layer, k: f.k === undefined ? undefined : parseIntFlag(f.k as string, 'k', 1) });
      const engine = await ForwardEngine.open({ modelDir: f.model as string, layer, sae, cacheDir: join(cliEnvironment(f['data-dir'], io).dataDir, 'graph-cache'), provider, threads, warn: (m) => io.stderr(`${m}\n`) });
      try {
        const tokenizer = await loadTokenizer(f.model as string);
        features = await featurizeTexts(engine, tokenizer, texts.map((t) => t.text), { windowTokens: 512, overlap: 64, batchTokens: FEATURIZE_BATCH_TOKENS, onProgress });
      } finally {
        await engine.close();
      }
      dSae = sae.dSae;
    } else {
      const r: RunnableBundle = await openBundleFlag(f.bundle as string | undefined, f['data-dir'], provider, threads, io);
      try {
        features = await featurizeForBundle(r, texts.map((t) => t.text), onProgress);
      } finally {
        await r.engine.close();
      }
      dSae = r.bundle.sae.dSae;
    }
    progress.done();

    const labels = texts.map((t) => t.label);
    const langs = texts.map((t) => t.lang);
    const split = stratifiedSplit(labels, langs, fraction, seed);
    const part = (idx: number[]) => ({ features: pick(features, idx), labels: pick(labels, idx), langs: pick(langs, idx) });
    const train = part(split.train), validation = part(split.holdout);
    const { rule, rankings } = fitDiscoveryRule(train, validation, dSae, { maxK });
    const metrics = evaluateRule(rule, validation);
    if (f.out) writeFileSync(f.out as string, JSON.stringify(rule.toJSON(), null, 1));

    const trim = (r: FeatureBias[]) => r.slice(0, top);
    if (f.json) {
      io.stdout(`${JSON.stringify({
        split: { seed, train: split.train.length, validation: split.holdout.length },
        rule: rule.toJSON(),
        validation: metrics,
        rankings: { pooled: trim(rankings.pooled), languages: Object.fromEntries(Object.entries(rankings.perLanguage).map(([l, r]) => [l, trim(r)])) },
      })}\n`);
      return 0;
    }
    const lines: string[] = [`split: ${split.train.length} train / ${split.holdout.length} validation (seed ${seed})`, ''];
    const show = (name: string, ranking: FeatureBias[], k: number | undefined, f1: number | undefined) => {
      lines.push(`${name}: rule K = ${k ?? '-'} (validation F1 ${f1 === undefined ? '-' : f1.toFixed(3)})`, `  ${'feature'.padStart(8)} ${'P(fire|tox)'.padStart(12)} ${'P(fire|non)'.padStart(12)} ${'bias'.padStart(7)}`);
      for (const b of trim(ranking)) lines.push(`  ${String(b.feature).padStart(8)} ${b.pToxic.toFixed(3).padStart(12)} ${b.pNonToxic.toFixed(3).padStart(12)} ${b.bias.toFixed(3).padStart(7)}`);
      lines.push('');
    };
    show('pooled', rankings.pooled, rule.state.pooled.k, rule.state.pooled.validationF1);
    for (const [lang, r] of Object.entries(rankings.perLanguage).sort()) show(lang, r, rule.state.perLanguage[lang]?.k, rule.state.perLanguage[lang]?.validationF1);
    lines.push(`validation F1 of the rule: ${metrics.overall.f1.toFixed(3)} (ROC-AUC ${metrics.overall.roc_auc?.toFixed(3) ?? 'n/a'})`);
    io.stdout(`${lines.join('\n')}\n`);
    return 0;
  },
};
