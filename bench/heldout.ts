/**
 * Held-out in-domain texts for the demo bundle's benchmarks: ../shared/data (train and dev) minus every text of
 * fixtures/data (what the demo trained on), grouped by language, seeded. Never read by the product.
 *
 *   heldOut({ toxicShare: 0.25, perLanguage: 400 })   each language resampled to that toxic share
 *   heldOut({ perLanguage: 400 })                      each language at the share its sources have
 */
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readLabeled, readLabeledFile, type LabeledText } from '../src/data/labeled.js';
import { seededRandom, shuffleInPlace } from '../src/util/random.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const SHARED_DATA = resolve(root, '..', 'shared', 'data');
export const FIXTURES = join(root, 'fixtures', 'data', 'train');

export function heldOutPool(from = SHARED_DATA): Map<string, LabeledText[]> {
  if (!existsSync(from)) throw new Error(`${from}: the shared labeled data is needed for held-out benchmarks`);
  const seen = new Set(readLabeled(FIXTURES).map((t) => t.text));
  const byLang = new Map<string, LabeledText[]>();
  for (const dir of ['train', 'dev'])
    for (const file of readdirSync(join(from, dir)).filter((f) => f.endsWith('.jsonl')).sort())
      for (const t of readLabeledFile(join(from, dir, file))) {
        if (seen.has(t.text)) continue;
        (byLang.get(t.lang) ?? byLang.set(t.lang, []).get(t.lang)!).push(t);
      }
  return byLang;
}

export function heldOut(o: { perLanguage: number; toxicShare?: number; seed?: number; exclude?: ReadonlySet<string>; from?: string }): Map<string, LabeledText[]> {
  const rand = seededRandom(o.seed ?? 11);
  const out = new Map<string, LabeledText[]>();
  for (const [lang, all] of [...heldOutPool(o.from)].sort((a, b) => a[0].localeCompare(b[0]))) {
    const pool = shuffleInPlace(all.filter((t) => !o.exclude?.has(t.text)), rand);
    if (o.toxicShare === undefined) out.set(lang, pool.slice(0, o.perLanguage));
    else {
      const nTox = Math.round(o.perLanguage * o.toxicShare);
      out.set(lang, [...pool.filter((t) => t.label === 1).slice(0, nTox), ...pool.filter((t) => t.label === 0).slice(0, o.perLanguage - nTox)]);
    }
  }
  return out;
}
