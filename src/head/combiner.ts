/**
 * Pooling 'combined' (src/head/head.ts), purely: no model, no files.
 *
 * A text's logits: w = its whole text's, m = the max of w and its parts' (sentences and windows, each encoded
 * alone), n = how many parts it has (0 for one sentence). The combined logit is
 *
 *   z = a w + b m + c sqrt(2 ln(1 + n)) + d              (then per-language Platt and the prior shift, as before)
 *
 * and training (src/head/train.ts fitPartsPenalty) uses a = 0, b = 1, d = 0: the max of 'max-segment' less a
 * penalty for the number of parts. A max over n parts grows with n on benign text alone (more draws; for
 * independent normal logits like sqrt(2 ln n)), which a plain max reads as toxicity: among 30 benign sentences one
 * clears the threshold. The penalty prices that in, at the cost of toxic parts among many, and is chosen on the
 * calibration split by the dilution targets themselves (DILUTION_TARGETS): its texts alone and embedded among
 * 3 and 30 benign texts of the same split and language (mixtures).
 *
 * A mixture's parts are its members' parts (a member of one sentence is one part: itself), since every part is
 * encoded alone and so scores the same wherever it stands; its whole text's features are its members' merged
 * (counts and tokens added, maxima taken): the whole text encoded without cross-sentence context, an
 * approximation that touches only w. Members that are one long unpunctuated sentence would also get windows in a
 * real mixture; here they count as one part (their own whole logit).
 */
import { seededRandom } from '../util/random.js';
import type { TextFeatures } from './text-features.js';

export interface Combiner {
  /** a: weight of the whole text's logit (0 as trained) */
  whole: number;
  /** b: weight of the max over the text and its parts */
  max: number;
  /** c: weight of sqrt(2 ln(1 + number of parts)) (partsTerm) */
  parts: number;
  /** d */
  bias: number;
}

/** One text's logits as the combiner reads them. */
export interface PoolInputs {
  whole: number;
  /** each part's logit (sentences, then windows less the window offset); [] for a text of one sentence */
  parts: readonly number[];
}

export function combine(c: Combiner, x: PoolInputs): number {
  let m = x.whole;
  for (const p of x.parts) if (p > m) m = p;
  return c.whole * x.whole + c.max * m + c.parts * partsTerm(x.parts.length) + c.bias;
}

/** Pad counts of the mixtures the parts penalty is chosen on (those of DILUTION_TARGETS). */
export const MIXTURE_PADS = [3, 30] as const;

export interface MixtureSource {
  /** features of the calibration split's texts (with their parts) */
  features: readonly TextFeatures[];
  labels: ArrayLike<number>;
  langs: readonly string[];
  /** the logit of a text or a part, before any pooling */
  logit: (f: TextFeatures, lang: string) => number;
  /** the part logits of a text: its segments' (windows less the offset), [] when it has none */
  partLogits: (f: TextFeatures, lang: string) => number[];
}

export interface CombinerSample extends PoolInputs {
  label: number;
  lang: string;
  /** the text (index into the source) that is embedded */
  item: number;
  /** mixtures: pad count; 0 for the text as it is */
  pads: number;
}

/**
 * The texts as they are and, for each pad count, each text embedded among that many benign texts of its language
 * (drawn with a seeded generator, never itself). Languages without two benign texts get no mixtures.
 */
export function combinerSamples(src: MixtureSource, seed = 0): CombinerSample[] {
  const n = src.features.length;
  const rand = seededRandom(seed);
  const whole = src.features.map((f, i) => src.logit(f, src.langs[i]));
  const parts = src.features.map((f, i) => src.partLogits(f, src.langs[i]));
  const out: CombinerSample[] = [];
  for (let i = 0; i < n; i++) out.push({ whole: whole[i], parts: parts[i], label: src.labels[i], lang: src.langs[i], item: i, pads: 0 });
  const benignByLang = new Map<string, number[]>();
  for (let i = 0; i < n; i++) if (src.labels[i] !== 1) (benignByLang.get(src.langs[i]) ?? benignByLang.set(src.langs[i], []).get(src.langs[i])!).push(i);
  const unitsOf = (j: number) => (parts[j].length > 0 ? parts[j] : [whole[j]]);
  for (const pads of MIXTURE_PADS) {
    for (let i = 0; i < n; i++) {
      const pool = benignByLang.get(src.langs[i]) ?? [];
      if (pool.length < 2) continue;
      const members = [i];
      while (members.length <= pads) {
        const j = pool[Math.floor(rand() * pool.length)];
        if (j !== i) members.push(j);
      }
      const merged = mergeFeatures(members.map((j) => src.features[j]));
      out.push({ whole: src.logit(merged, src.langs[i]), parts: members.flatMap(unitsOf), label: src.labels[i], lang: src.langs[i], item: i, pads });
    }
  }
  return out;
}

/**
 * The features of texts joined into one, without context between them: tokens and counts added, ids merged,
 * rates recomputed, maxima taken. No parts (the caller knows them).
 */
export function mergeFeatures(fs: readonly TextFeatures[]): TextFeatures {
  const counts = new Map<number, number>(), maxActs = new Map<number, number>();
  let nTokens = 0;
  for (const f of fs) {
    nTokens += f.nTokens;
    for (let k = 0; k < f.ids.length; k++) {
      const id = f.ids[k];
      counts.set(id, (counts.get(id) ?? 0) + f.counts[k]);
      maxActs.set(id, Math.max(maxActs.get(id) ?? -Infinity, f.maxActs[k]));
    }
  }
  const ids = Int32Array.from([...counts.keys()].sort((a, b) => a - b));
  const c = Int32Array.from(ids, (id) => counts.get(id)!);
  return { nTokens, ids, counts: c, rates: Float32Array.from(c, (v) => (nTokens > 0 ? v / nTokens : 0)), maxActs: Float32Array.from(ids, (id) => maxActs.get(id)!) };
}

/** sqrt(2 ln(1 + n)): how the max of n independent standard normal logits grows with n. */
export function partsTerm(n: number): number {
  return Math.sqrt(2 * Math.log1p(n));
}

/** What the dilution probe asks (issue #13): a flagged toxic text stays flagged among pads; benign texts' rate rises little. */
export const DILUTION_TARGETS = [
  { pads: 3, kept: 0.9, rise: 0.02 },
  { pads: 30, kept: 0.8, rise: 0.02 },
] as const;

export interface DilutionPoint {
  pads: number;
  /** share of the toxic texts flagged alone that stay flagged among `pads` benign texts */
  kept: number;
  /** benign flag rate among `pads` benign texts minus alone */
  rise: number;
}

/** kept and rise per pad count, from each sample's decision. */
export function dilutionPoints(samples: readonly CombinerSample[], flagged: readonly boolean[]): DilutionPoint[] {
  const alone = new Map<number, boolean>();
  samples.forEach((s, i) => s.pads === 0 && alone.set(s.item, flagged[i]));
  const benignAlone = share(samples.flatMap((s, i) => (s.pads === 0 && s.label !== 1 ? [flagged[i]] : [])));
  return [...new Set(samples.map((s) => s.pads))].filter((p) => p > 0).sort((a, b) => a - b).map((pads) => ({
    pads,
    kept: share(samples.flatMap((s, i) => (s.pads === pads && s.label === 1 && alone.get(s.item) ? [flagged[i]] : []))),
    rise: share(samples.flatMap((s, i) => (s.pads === pads && s.label !== 1 ? [flagged[i]] : []))) - benignAlone,
  }));
}

/**
 * How far the points miss DILUTION_TARGETS, kept first: `kept` sums the shortfalls of the kept targets (evasion),
 * `rise` those of the benign-rise targets (over-flagging); both 0 when every target is met.
 */
export function dilutionShortfall(points: readonly DilutionPoint[]): { kept: number; rise: number } {
  const miss = { kept: 0, rise: 0 };
  for (const t of DILUTION_TARGETS) {
    const p = points.find((q) => q.pads === t.pads);
    if (!p) continue;
    miss.kept += Math.max(0, t.kept - p.kept);
    miss.rise += Math.max(0, p.rise - t.rise);
  }
  return miss;
}

/** a is a better choice than b: less evasion first, then less over-flagging (ties: neither). */
export function missesLess(a: { kept: number; rise: number }, b: { kept: number; rise: number }): boolean {
  return a.kept < b.kept - 1e-9 || (Math.abs(a.kept - b.kept) <= 1e-9 && a.rise < b.rise - 1e-9);
}

function share(xs: readonly boolean[]): number {
  return xs.length === 0 ? 0 : xs.filter(Boolean).length / xs.length;
}
