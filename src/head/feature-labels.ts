/**
 * Feature labels: what each SAE feature the head uses fires on in the training data, in words.
 *
 * While training texts are featurised, ContextRecorder keeps, for every feature, the token positions where its
 * code was largest (overall and per language). After training, `labelFeatures` turns those into, for each
 * feature with a non-zero weight in a head:
 *
 *   tokens        the distinct tokens of its top contexts, strongest first
 *   byLanguage    the same per language, with how often the feature fired in that language's texts
 *   snippets      short windows of text around its top contexts, the token in [brackets] (only when text may
 *                 be stored: always for the licensed demo sample, for user data only with TOXSCOPE_STORE_TEXT)
 *   label         a short name from its top tokens: 'fires on "idiot", "stupid", "moron" (en, de)'
 *
 *   <bundle>/features.json  { format: "toxscope-feature-labels", version: 1, snippets: bool, features: { "<id>": {...} } }
 */
import { z } from 'zod';
import { formatError } from '../errors.js';
import { describeZodError } from './encoding.js';

export const FEATURE_LABELS_FILE = 'features.json';

/** Contexts kept per feature overall and per feature and language. */
const TOP = 8;
const TOP_PER_LANGUAGE = 3;
const SNIPPET_CHARS = 32;

export interface FeatureLabel {
  label: string;
  tokens: string[];
  byLanguage: Record<string, { fired: number; tokens: string[] }>;
  snippets?: string[];
}

/** One text's stitched top-k codes (the engine's TopKBatch with batch 1): float32 / int32 [1, n, k]. */
export interface TextCodes {
  seqLen: number;
  k: number;
  values: Float32Array;
  indices: Int32Array;
}

/** One text as it was featurised: its normalised form and its tokens' [start, end) in it. */
export interface RecordedText {
  text: string;
  lang: string;
  offsets: readonly (readonly [number, number])[];
}

/** Fixed-size top lists of (activation, text, token) per slot, kept sorted descending. */
class TopLists {
  readonly values: Float32Array;
  readonly texts: Int32Array;
  readonly tokens: Int32Array;
  constructor(slots: number, readonly k: number) {
    this.values = new Float32Array(slots * k);
    this.texts = new Int32Array(slots * k).fill(-1);
    this.tokens = new Int32Array(slots * k).fill(-1);
  }
  offer(slot: number, v: number, text: number, token: number): void {
    const base = slot * this.k;
    if (v <= this.values[base + this.k - 1]) return;
    let at = this.k - 1;
    while (at > 0 && this.values[base + at - 1] < v) {
      this.values[base + at] = this.values[base + at - 1];
      this.texts[base + at] = this.texts[base + at - 1];
      this.tokens[base + at] = this.tokens[base + at - 1];
      at--;
    }
    this.values[base + at] = v;
    this.texts[base + at] = text;
    this.tokens[base + at] = token;
  }
  entries(slot: number): { value: number; text: number; token: number }[] {
    const out = [];
    for (let j = 0; j < this.k; j++) {
      const i = slot * this.k + j;
      if (this.texts[i] < 0) break;
      out.push({ value: this.values[i], text: this.texts[i], token: this.tokens[i] });
    }
    return out;
  }
}

export class ContextRecorder {
  private readonly overall: TopLists;
  private readonly perLanguage: TopLists;
  private readonly fired: Int32Array;
  private readonly langIndex: Map<string, number>;

  constructor(private readonly dSae: number, private readonly texts: readonly RecordedText[]) {
    const langs = [...new Set(texts.map((t) => t.lang))].sort();
    this.langIndex = new Map(langs.map((l, i) => [l, i]));
    this.overall = new TopLists(dSae, TOP);
    this.perLanguage = new TopLists(dSae * langs.length, TOP_PER_LANGUAGE);
    this.fired = new Int32Array(dSae * langs.length);
  }

  get languages(): string[] {
    return [...this.langIndex.keys()];
  }

  /** One text's stitched codes [1, n, k] (n = its tokens, in the order of its offsets). */
  record(text: number, codes: TextCodes): void {
    const { seqLen: n, k } = codes;
    const li = this.langIndex.get(this.texts[text].lang)!;
    const L = this.langIndex.size;
    const seen = new Set<number>();
    for (let t = 0; t < n; t++) {
      for (let j = 0; j < k; j++) {
        const v = codes.values[t * k + j];
        if (!(v > 0)) continue;
        const f = codes.indices[t * k + j];
        this.overall.offer(f, v, text, t);
        this.perLanguage.offer(f * L + li, v, text, t);
        if (!seen.has(f)) {
          seen.add(f);
          this.fired[f * L + li]++;
        }
      }
    }
  }

  /** Labels of `features` (the ones a head uses); snippets only when text may be stored. */
  labels(features: Iterable<number>, opts: { snippets: boolean }): Record<string, FeatureLabel> {
    const out: Record<string, FeatureLabel> = {};
    const L = this.langIndex.size;
    for (const f of [...new Set(features)].sort((a, b) => a - b)) {
      const top = this.overall.entries(f);
      if (top.length === 0) continue;
      const tokens = distinct(top.map((e) => this.tokenText(e.text, e.token)));
      const byLanguage: FeatureLabel['byLanguage'] = {};
      for (const [lang, li] of this.langIndex) {
        const fired = this.fired[f * L + li];
        if (fired === 0) continue;
        byLanguage[lang] = { fired, tokens: distinct(this.perLanguage.entries(f * L + li).map((e) => this.tokenText(e.text, e.token))) };
      }
      const langs = Object.entries(byLanguage).sort((a, b) => b[1].fired - a[1].fired).slice(0, 3).map(([l]) => l);
      const label = `fires on ${tokens.slice(0, 3).map((t) => JSON.stringify(t)).join(', ')}${langs.length ? ` (${langs.join(', ')})` : ''}`;
      const entry: FeatureLabel = { label, tokens: tokens.slice(0, 5), byLanguage };
      if (opts.snippets) entry.snippets = distinct(top.slice(0, 3).map((e) => this.snippet(e.text, e.token)));
      out[String(f)] = entry;
    }
    return out;
  }

  private tokenText(text: number, token: number): string {
    const r = this.texts[text];
    const [s, e] = r.offsets[token] ?? [0, 0];
    const t = r.text.slice(s, e).trim();
    return t === '' ? r.text.slice(s, e) : t;
  }

  private snippet(text: number, token: number): string {
    const r = this.texts[text];
    const [s, e] = r.offsets[token] ?? [0, 0];
    const from = Math.max(0, s - SNIPPET_CHARS), to = Math.min(r.text.length, e + SNIPPET_CHARS);
    return `${from > 0 ? '…' : ''}${r.text.slice(from, s)}[${r.text.slice(s, e)}]${r.text.slice(e, to)}${to < r.text.length ? '…' : ''}`.replace(/\s+/g, ' ');
  }
}

const distinct = (xs: string[]) => [...new Set(xs)];

/** Features a head reads: any part's weight non-zero. */
export function usedFeatures(weights: Float32Array, dSae: number, parts: number): number[] {
  const used = new Set<number>();
  for (let b = 0; b < parts; b++) for (let f = 0; f < dSae; f++) if (weights[b * dSae + f] !== 0) used.add(f);
  return [...used];
}

const labelSchema = z.object({
  label: z.string(),
  tokens: z.array(z.string()),
  byLanguage: z.record(z.string(), z.object({ fired: z.number().int().nonnegative(), tokens: z.array(z.string()) })),
  snippets: z.array(z.string()).optional(),
});
const fileSchema = z.object({
  format: z.literal('toxscope-feature-labels'),
  version: z.literal(1),
  snippets: z.boolean(),
  features: z.record(z.string().regex(/^\d+$/), labelSchema),
});

export class FeatureLabels {
  constructor(readonly features: ReadonlyMap<number, FeatureLabel>, readonly snippets: boolean) {}

  get(id: number): FeatureLabel | undefined {
    return this.features.get(id);
  }

  toJSON(): unknown {
    return { format: 'toxscope-feature-labels', version: 1, snippets: this.snippets, features: Object.fromEntries([...this.features].map(([id, l]) => [String(id), l])) };
  }

  static fromRecord(features: Record<string, FeatureLabel>, snippets: boolean): FeatureLabels {
    return new FeatureLabels(new Map(Object.entries(features).map(([id, l]) => [Number(id), l])), snippets);
  }

  static fromJSON(json: unknown, source: string): FeatureLabels {
    const parsed = fileSchema.safeParse(json);
    if (!parsed.success) throw formatError(describeZodError(source, parsed.error));
    return FeatureLabels.fromRecord(parsed.data.features, parsed.data.snippets);
  }
}
