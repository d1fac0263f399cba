/**
 * Measures the head's training code on real labeled text, with Qwen3 token ids standing in for SAE
 * features (feature j "fires" on a token iff the token id is j; maxAct = 1). This is the "TF-IDF over
 * Qwen tokens" lexical baseline of NOTES.md, so it checks the solver, calibration, thresholds and
 * discovery at realistic size (about 70k texts x 151,669 columns), not the SAE.
 *
 *   npx tsx scripts/head-token-baseline.ts [--data ../shared/data/train] [--dev ../shared/data/dev]
 *        [--holdout 0.2] [--seed 1] [--lambda 1/N] [--l1-ratio 0] [--json]
 */
import { readLabeled, splitLabeled, type LabeledText } from '../src/data/labeled.js';
import { loadTokenizer } from '../src/engine/tokenizer.js';
import type { TextFeatures } from '../src/head/text-features.js';
import { evaluateHead, evaluateRule, type LabeledSet } from '../src/head/evaluate.js';
import type { MetricsReport } from '../src/head/metrics.js';
import { trainHead } from '../src/head/train.js';

function tokenFeatures(ids: number[]): TextFeatures {
  const counts = new Map<number, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  const sorted = Int32Array.from([...counts.keys()].sort((a, b) => a - b));
  const c = Int32Array.from(sorted, (id) => counts.get(id)!);
  const n = Math.max(1, ids.length);
  return { nTokens: n, ids: sorted, counts: c, rates: Float32Array.from(c, (v) => v / n), maxActs: new Float32Array(sorted.length).fill(1) };
}

async function main(argv: string[]): Promise<void> {
  const arg = (name: string, dflt: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : dflt;
  };
  const tok = await loadTokenizer();
  const toSet = (texts: LabeledText[]): LabeledSet => ({
    features: tok.encodeBatch(texts.map((t) => t.text), { maxTokens: 256 }).map(tokenFeatures),
    labels: texts.map((t) => t.label),
    langs: texts.map((t) => t.lang),
  });
  const all = readLabeled(arg('data', '../shared/data/train'));
  const { train, holdout } = splitLabeled(all, Number(arg('holdout', '0.2')), Number(arg('seed', '1')));
  const t0 = performance.now();
  const trainSet = toSet(train), heldSet = toSet(holdout), devSet = toSet(readLabeled(arg('dev', '../shared/data/dev')));
  const encodeSeconds = (performance.now() - t0) / 1000;
  const result = trainHead({ ...trainSet, dSae: tok.vocabSize }, {
    seed: Number(arg('seed', '1')),
    logistic: { lambda: argv.includes('--lambda') ? Number(arg('lambda', '')) : undefined, l1Ratio: Number(arg('l1-ratio', '0')) },
  });
  const out = {
    texts: { train: train.length, holdout: holdout.length, dev: devSet.labels.length },
    encodeSeconds, trainSeconds: result.report.seconds, logistic: result.report.logistic,
    peakRssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
    calibrationSplit: { eceBefore: result.report.uncalibrated.overall.ece, eceAfter: result.report.calibrated.overall.ece },
    holdout: { head: evaluateHead(result.head, heldSet), rule: evaluateRule(result.rule, heldSet) },
    dev: { head: evaluateHead(result.head, devSet), rule: evaluateRule(result.rule, devSet) },
  };
  if (argv.includes('--json')) return void console.log(JSON.stringify(out, null, 2));
  const { holdout: h, dev: d, ...rest } = out;
  console.log(JSON.stringify(rest));
  const table = (name: string, head: MetricsReport, rule: MetricsReport) => {
    console.log(`\n${name}: lang n | head f1 roc_auc pr_auc ece | rule f1 roc_auc`);
    for (const [lang, m] of [...Object.entries(head.languages), ['overall', head.overall] as const]) {
      const r = lang === 'overall' ? rule.overall : rule.languages[lang];
      const f = (v: number | null) => (v === null ? '-' : v.toFixed(3));
      console.log(`${lang.padEnd(8)} ${String(m.n).padStart(6)} | ${f(m.f1)} ${f(m.roc_auc)} ${f(m.pr_auc)} ${f(m.ece)} | ${f(r.f1)} ${f(r.roc_auc)}`);
    }
  };
  table('held-out 20% of train', h.head, h.rule);
  table('dev', d.head, d.rule);
}

main(process.argv.slice(2)).catch((e) => {
  console.error(e);
  process.exit(1);
});
