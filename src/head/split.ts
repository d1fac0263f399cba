/** Seeded stratified splits: every (language, label) stratum is split in the same proportion. */
import { validationError } from '../errors.js';
import { seededRandom, shuffleInPlace } from '../util/random.js';

export interface Split {
  /** indices into the input, ascending */
  train: number[];
  holdout: number[];
}

/**
 * Puts round(fraction * size) texts of each (language, label) stratum into `holdout`, chosen by a
 * seeded shuffle; strata are visited in sorted order, so the split depends only on the data and seed.
 */
export function stratifiedSplit(labels: ArrayLike<number>, langs: readonly string[], fraction: number, seed: number): Split {
  if (!(fraction > 0 && fraction < 1)) throw validationError(`split: fraction must be in (0, 1), got ${fraction}`);
  if (labels.length !== langs.length) throw validationError(`split: ${labels.length} labels but ${langs.length} languages`);
  const strata = new Map<string, number[]>();
  langs.forEach((lang, i) => {
    const key = `${lang}\u0000${labels[i]}`;
    const s = strata.get(key);
    if (s) s.push(i);
    else strata.set(key, [i]);
  });
  const rand = seededRandom(seed);
  const inHoldout = new Uint8Array(labels.length);
  for (const key of [...strata.keys()].sort()) {
    const idx = shuffleInPlace(strata.get(key)!, rand);
    const take = Math.round(fraction * idx.length);
    for (let k = 0; k < take; k++) inHoldout[idx[k]] = 1;
  }
  const train: number[] = [], holdout: number[] = [];
  inHoldout.forEach((h, i) => (h ? holdout : train).push(i));
  return { train, holdout };
}
