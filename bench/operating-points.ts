/**
 * `npm run -s bench -- operating-points [--per-language 400] [--toxic-share 0.25|natural] [--json] [--data-dir .toxscope]`
 *
 * Macro-F1 of the demo bundle's toxicity head at its SERVED thresholds on held-out in-domain texts (../shared/data
 * minus the fixture sample it trained on), per language, beside a character n-gram TF-IDF + logistic regression
 * peer (bench/tfidf-peer.ts) trained on the same 12,000 fixture rows and read at 0.5. Also the same head calibrated
 * and thresholded for the training sample's prior (no prior shift), to show what the shift changes.
 * THE DEMO BACKBONE IS SYNTHETIC: these numbers measure the pipeline, not Qwen3 features.
 */
import { featurizeForBundle } from '../src/bundle/open.js';
import { readLabeled } from '../src/data/labeled.js';
import { binaryMetrics } from '../src/head/metrics.js';
import { Head } from '../src/head/head.js';
import { progressBar } from '../src/cli/progress.js';
import { FIXTURES, heldOut } from './heldout.js';
import { CharTfidfPeer } from './tfidf-peer.js';
import { f3, flag, openDemo } from './demo-context.js';

export async function run(argv: string[]): Promise<number> {
  const perLanguage = Number(flag(argv, 'per-language', '400'));
  const shareFlag = flag(argv, 'toxic-share', '0.25');
  const toxicShare = shareFlag === 'natural' ? undefined : Number(shareFlag);
  const r = await openDemo(argv);
  try {
    const sets = heldOut({ perLanguage, toxicShare });
    const texts = [...sets.values()].flat();
    const progress = progressBar((s) => process.stderr.write(s));
    const features = await featurizeForBundle(r, texts.map((t) => t.text), (d, n) => progress.update('held-out', d, n));
    progress.done();
    const train = readLabeled(FIXTURES);
    const t0 = performance.now();
    const peer = new CharTfidfPeer().fit(train.map((t) => t.text), train.map((t) => t.label));
    const peerSeconds = (performance.now() - t0) / 1000;
    const served = r.bundle.head;
    const samplePrior = served.prior?.deployment.pooled !== undefined || Object.keys(served.prior?.deployment.perLanguage ?? {}).length ? served.withPrevalence({ pooled: null, ...Object.fromEntries(Object.keys(served.prior!.deployment.perLanguage).map((l) => [l, null])) }) : served;
    const macroObjective = served.curve ? new Head({ ...served, thresholds: served.thresholds, curve: { ...served.curve, objective: { mode: 'macro-f1' } } } as ConstructorParameters<typeof Head>[0]) : served;
    const macroHead = served.curve ? new Head({ ...served, thresholds: macroObjective.thresholdsFromCurve(macroObjective.curve!).table } as ConstructorParameters<typeof Head>[0]) : served;
    const rows: Record<string, unknown>[] = [];
    let at = 0;
    const metricsOf = (h: Head, idx: number[], lang: string) => {
      const s = idx.map((i) => h.score(features[i], lang));
      return binaryMetrics({ labels: idx.map((i) => texts[i].label), scores: s.map((x) => x.probability), predicted: s.map((x) => (x.toxic ? 1 : 0)) });
    };
    for (const [lang, set] of sets) {
      const idx = set.map((_, j) => at + j);
      at += set.length;
      const labels = set.map((t) => t.label);
      const pp = set.map((t) => peer.probability(t.text));
      const p = binaryMetrics({ labels, scores: pp, predicted: pp.map((x) => (x >= 0.5 ? 1 : 0)) });
      const a = metricsOf(served, idx, lang), b = metricsOf(samplePrior, idx, lang), m = metricsOf(macroHead, idx, lang);
      rows.push({
        lang, n: set.length, toxic_share: labels.filter((l) => l === 1).length / set.length,
        served_macro_f1: a.macro_f1, sample_prior_macro_f1: b.macro_f1, macro_objective_macro_f1: m.macro_f1, peer_macro_f1: p.macro_f1, ratio: a.macro_f1 / p.macro_f1,
        served_flag_rate: idx.filter((i) => served.score(features[i], lang).toxic).length / idx.length, served_roc_auc: a.roc_auc, peer_roc_auc: p.roc_auc,
      });
    }
    const mean = (k: string) => rows.reduce((s, x) => s + (x[k] as number), 0) / rows.length;
    const summary = { served_macro_f1: mean('served_macro_f1'), sample_prior_macro_f1: mean('sample_prior_macro_f1'), macro_objective_macro_f1: mean('macro_objective_macro_f1'), peer_macro_f1: mean('peer_macro_f1') };
    const out = { bundle: r.bundle.manifest.version, synthetic_backbone: r.bundle.manifest.synthetic_backbone, prior: served.prior?.deployment, toxic_share: shareFlag, per_language: perLanguage, peer_fit_seconds: peerSeconds, rows, mean: { ...summary, ratio: summary.served_macro_f1 / summary.peer_macro_f1 } };
    if (argv.includes('--json')) console.log(JSON.stringify(out, null, 2));
    else {
      console.log(`${out.bundle} (SYNTHETIC backbone: pipeline numbers, not Qwen3's); held-out toxic share ${shareFlag}; deployment prior ${JSON.stringify(out.prior)}`);
      console.log('lang     n  toxic | served macro-F1 | sample-prior | macro-F1 objective | peer macro-F1 | ratio | served ROC-AUC  peer ROC-AUC');
      for (const x of rows) console.log(`${String(x.lang).padEnd(4)} ${String(x.n).padStart(5)}  ${f3(x.toxic_share as number)} |     ${f3(x.served_macro_f1 as number)}       |    ${f3(x.sample_prior_macro_f1 as number)}     |      ${f3(x.macro_objective_macro_f1 as number)}         |     ${f3(x.peer_macro_f1 as number)}     | ${f3(x.ratio as number)} |     ${f3(x.served_roc_auc as number)}       ${f3(x.peer_roc_auc as number)}`);
      console.log(`mean           |     ${f3(summary.served_macro_f1)}       |    ${f3(summary.sample_prior_macro_f1)}     |      ${f3(summary.macro_objective_macro_f1)}         |     ${f3(summary.peer_macro_f1)}     | ${f3(out.mean.ratio)}`);
    }
    return 0;
  } finally {
    await r.engine.close();
  }
}
