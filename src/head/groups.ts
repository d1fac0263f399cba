/** Grouping texts by language, and the rule for when a language has enough data to get its own fit. */

export interface GroupPolicy {
  /** texts a language needs on the split (default 200) */
  minSamples?: number;
  /** texts of each class it needs on the split (default 20) */
  minPerClass?: number;
}

export const DEFAULT_MIN_SAMPLES = 200;
export const DEFAULT_MIN_PER_CLASS = 20;

/** Indices of the texts of each language, languages in sorted order. */
export function groupByLanguage(langs: readonly string[]): Map<string, number[]> {
  const groups = new Map<string, number[]>();
  for (const lang of [...new Set(langs)].sort()) groups.set(lang, []);
  langs.forEach((l, i) => groups.get(l)!.push(i));
  return groups;
}

/** Whether a group of labels is large enough and has enough of both classes. */
export function hasEnoughData(labels: ArrayLike<number>, idx: readonly number[], policy: GroupPolicy = {}): boolean {
  const minSamples = policy.minSamples ?? DEFAULT_MIN_SAMPLES;
  const minPerClass = policy.minPerClass ?? DEFAULT_MIN_PER_CLASS;
  let pos = 0;
  for (const i of idx) pos += labels[i] === 1 ? 1 : 0;
  return idx.length >= minSamples && pos >= minPerClass && idx.length - pos >= minPerClass;
}

export function pick<T>(values: ArrayLike<T>, idx: readonly number[]): T[] {
  return idx.map((i) => values[i]);
}
