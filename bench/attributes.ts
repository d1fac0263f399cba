/**
 * `npm run -s bench -- attributes [--per-language 300] [--json] [--data-dir .toxscope]`
 *
 * Per-attribute quality of the demo bundle on held-out in-domain texts (../shared/data minus the fixture sample it
 * trained on), attribute labels derived from the sources' original annotation exactly as for training
 * (src/bundle/demo/fixture-attributes.ts): per attribute and language, n, positives, F1 and macro-F1 at the served
 * thresholds, ROC-AUC. THE DEMO BACKBONE IS SYNTHETIC: these numbers measure the pipeline, not Qwen3 features.
 */
import { featurizeForBundle } from '../src/bundle/open.js';
import { fixtureAttributes } from '../src/bundle/demo/fixture-attributes.js';
import { binaryMetrics } from '../src/head/metrics.js';
import { progressBar } from '../src/cli/progress.js';
import { heldOutPool } from './heldout.js';
import { f3, flag, openDemo } from './demo-context.js';
import { seededRandom, shuffleInPlace } from '../src/util/random.js';

export async function run(argv: string[]): Promise<number> {
  const perLanguage = Number(flag(argv, 'per-language', '300'));
  const r = await openDemo(argv);
  try {
    const heads = { toxicity: r.bundle.head, ...r.bundle.attributes };
    const rand = seededRandom(31);
    const texts = [...heldOutPool()].flatMap(([, all]) => shuffleInPlace(all.filter((t) => Object.keys(fixtureAttributes(t)).length > 0), rand).slice(0, perLanguage));
    const progress = progressBar((s) => process.stderr.write(s));
    const features = await featurizeForBundle(r, texts.map((t) => t.text), (d, n) => progress.update('held-out', d, n));
    progress.done();
    const rows: Record<string, unknown>[] = [];
    for (const [name, head] of Object.entries(heads)) {
      const labelOf = (i: number) => (name === 'toxicity' ? texts[i].label : fixtureAttributes(texts[i])[name]);
      for (const lang of [...new Set(texts.map((t) => t.lang))].sort()) {
        const idx = texts.flatMap((t, i) => (t.lang === lang && (labelOf(i) === 0 || labelOf(i) === 1) ? [i] : []));
        const pos = idx.filter((i) => labelOf(i) === 1).length;
        if (idx.length < 20 || pos < 5 || idx.length - pos < 5) continue;
        const s = idx.map((i) => head.score(features[i], lang));
        const m = binaryMetrics({ labels: idx.map((i) => labelOf(i) as number), scores: s.map((x) => x.probability), predicted: s.map((x) => (x.toxic ? 1 : 0)) });
        rows.push({ attribute: name, lang, n: idx.length, positive: pos, f1: m.f1, macro_f1: m.macro_f1, roc_auc: m.roc_auc });
      }
    }
    if (argv.includes('--json')) console.log(JSON.stringify({ bundle: r.bundle.manifest.version, rows }, null, 2));
    else {
      console.log(`${r.bundle.manifest.version} (SYNTHETIC backbone: pipeline numbers, not Qwen3's); held-out texts of sources with attribute labels`);
      console.log('attribute        lang     n  positive |   F1   macro-F1  ROC-AUC');
      for (const x of rows) console.log(`${String(x.attribute).padEnd(16)} ${String(x.lang).padEnd(4)} ${String(x.n).padStart(5)} ${String(x.positive).padStart(6)}    | ${f3(x.f1 as number)}   ${f3(x.macro_f1 as number)}    ${f3(x.roc_auc as number)}`);
    }
    return 0;
  } finally {
    await r.engine.close();
  }
}
