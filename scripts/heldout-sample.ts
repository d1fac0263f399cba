/**
 * A held-out evaluation sample of ../shared/data/train: texts NOT in fixtures/data (what the demo head trained
 * on), up to `per-class` toxic and non-toxic per source file and language, seeded. For measuring the demo
 * bundle (`toxscope eval --data <out>`); never read by the product.
 *
 *   npx tsx scripts/heldout-sample.ts [--from ../shared/data] [--fixtures fixtures/data] [--per-class 150] [--seed 1] --out /tmp/heldout.jsonl
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readLabeled, readLabeledFile } from '../src/data/labeled.js';
import { seededRandom, shuffleInPlace } from '../src/util/random.js';

const arg = (name: string, dflt?: string) => {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : dflt;
  if (v === undefined) throw new Error(`--${name} is required`);
  return v;
};
const from = arg('from', '../shared/data');
const perClass = Number(arg('per-class', '150'));
const seen = new Set(readLabeled(join(arg('fixtures', 'fixtures/data'), 'train')).map((t) => t.text));
const rand = seededRandom(Number(arg('seed', '1')));
const lines: string[] = [];
for (const file of readdirSync(join(from, 'train')).filter((f) => f.endsWith('.jsonl')).sort()) {
  const strata = new Map<string, ReturnType<typeof readLabeledFile>>();
  for (const t of readLabeledFile(join(from, 'train', file))) {
    if (seen.has(t.text)) continue;
    const key = `${t.lang}/${t.label}`;
    (strata.get(key) ?? strata.set(key, []).get(key)!).push(t);
  }
  for (const key of [...strata.keys()].sort())
    for (const t of shuffleInPlace(strata.get(key)!, rand).slice(0, perClass)) lines.push(JSON.stringify({ text: t.text, label: t.label, lang: t.lang, source: t.source }));
}
writeFileSync(arg('out'), lines.join('\n') + '\n');
console.log(`${lines.length} held-out texts written to ${arg('out')}`);
