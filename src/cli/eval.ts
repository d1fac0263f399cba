/**
 * `toxscope eval`: per-language n, precision, recall, F1, macro-F1, ROC-AUC, PR-AUC and ECE of a bundle's
 * head, with its discovery rule side by side, on a labeled set.
 */
import { featurizeForBundle } from '../bundle/open.js';
import { readLabeled } from '../data/labeled.js';
import { evaluateHead, evaluateRule } from '../head/evaluate.js';
import type { BinaryMetrics, MetricsReport } from '../head/metrics.js';
import type { Provider } from '../runtime/session.js';
import { parseChoice, parseFlags, parseIntFlag, requireString, parseEngineFlags } from './args.js';
import { openBundleFlag } from './bundle-arg.js';
import type { CliIO, Command } from './main.js';
import { progressBar } from './progress.js';

const USAGE = `usage: toxscope eval --data <jsonl file or dir> [--bundle <dir>] [--json] [--data-dir <dir>] [--threads <n>] [--provider cpu|cuda]

  --data      labeled JSON Lines: {"text", "label": 0|1, "lang"} per line
  --bundle    the bundle to evaluate (default: the demo bundle, SYNTHETIC backbone)
  --json      print one JSON object {"languages": {...}, "overall": {...}, "rule": {...}, "bundle": {...}}`;

const FLAGS = {
  data: { type: 'string' },
  bundle: { type: 'string' },
  json: { type: 'boolean', default: false },
  'data-dir': { type: 'string' },
  threads: { type: 'string' },
  provider: { type: 'string', default: 'cpu' },
} as const;

const KEYS = ['n', 'precision', 'recall', 'f1', 'macro_f1', 'roc_auc', 'pr_auc', 'ece'] as const;

export const evalCommand: Command = {
  name: 'eval',
  summary: "Evaluate a bundle's head and discovery rule per language on labeled data.",
  usage: USAGE,
  async run(argv: string[], io: CliIO): Promise<number> {
    const f = parseFlags(argv, FLAGS);
    const texts = readLabeled(requireString(f, 'data'));
    const { provider, threads } = parseEngineFlags(f);
    const r = await openBundleFlag(f.bundle as string | undefined, f['data-dir'], provider, threads, io);
    try {
      const progress = progressBar(io.stderr);
      const features = await featurizeForBundle(r, texts.map((t) => t.text), (d, n) => progress.update('encoding', d, n));
      progress.done();
      const set = { features, labels: texts.map((t) => t.label), langs: texts.map((t) => t.lang) };
      const head = evaluateHead(r.bundle.head, set);
      const rule = r.bundle.rule ? evaluateRule(r.bundle.rule, set) : null;
      const bundle = { dir: r.bundle.dir, version: r.bundle.manifest.version, synthetic_backbone: r.bundle.manifest.synthetic_backbone };
      if (f.json) io.stdout(`${JSON.stringify({ ...head, ...(rule ? { rule } : {}), bundle })}\n`);
      else io.stdout(table(head, rule, bundle.synthetic_backbone));
      return 0;
    } finally {
      await r.engine.close();
    }
  },
};

function table(head: MetricsReport, rule: MetricsReport | null, synthetic: boolean): string {
  const rows = [...Object.keys(head.languages).sort(), 'overall'];
  const get = (m: MetricsReport, l: string): BinaryMetrics | undefined => (l === 'overall' ? m.overall : m.languages[l]);
  const cell = (v: number | null | undefined) => (v === null || v === undefined ? '   n/a' : Number.isInteger(v) && v > 1 ? String(v).padStart(6) : v.toFixed(3).padStart(6));
  const lines: string[] = [];
  if (synthetic) lines.push('NOTE: synthetic demo backbone: these numbers measure the pipeline, not Qwen3 features.', '');
  for (const [name, m] of [['head', head], ['discovery rule', rule]] as const) {
    if (!m) continue;
    lines.push(`${name}:`, `  ${'lang'.padEnd(8)}${KEYS.map((k) => k.padStart(9)).join('')}`);
    for (const l of rows) {
      const x = get(m, l);
      if (x) lines.push(`  ${l.padEnd(8)}${KEYS.map((k) => cell(x[k]).padStart(9)).join('')}`);
    }
    lines.push('');
  }
  return `${lines.join('\n')}\n`;
}
