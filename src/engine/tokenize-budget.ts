/**
 * A request's texts tokenized within its token budget, piece by piece (src/engine/tokenizer-pieces.ts, at most
 * PIECE_CHARS characters per call to the BPE), refused as soon as the running token count passes the budget:
 * an over-budget request is never tokenized whole, only up to the budget plus the piece that passed it.
 *
 * encodeWithinBudget is the work as a generator that stops after every piece, so whoever drives it decides when
 * to pause: the tokenizer worker (src/engine/text-worker.ts) takes turns between requests with it, and
 * tokenizeWithinBudget below runs it on the calling thread in slices that yield to the event loop.
 */
import { ToxScopeError, validationError } from '../errors.js';
import type { EncodingWithOffsets, Tokenizer } from './tokenizer.js';

export interface TokenizeBudget {
  /** most tokens of all texts together */
  maxTokens: number;
  signal?: AbortSignal;
  /** performance.now() after which the work stops with 'timeout' (absent: none) */
  deadline?: number;
  /** longest run on the event loop before yielding (default 10 ms) */
  sliceMs?: number;
}

export interface TokenizeProgress {
  /** characters tokenized, of all texts together */
  chars: number;
  /** tokens produced so far, of all texts together */
  tokens?: number;
}

export type PieceTokenizer = Pick<Tokenizer, 'encodeWithOffsets' | 'splitPieces'>;

/**
 * Tokens and offsets of each text, one piece per step (the generator pauses after every piece). Throws
 * 'payload_too_large' as soon as the running count passes `maxTokens`, and a validation error for a text
 * without tokens.
 */
export function* encodeWithinBudget(
  tokenizer: PieceTokenizer,
  texts: readonly string[],
  maxTokens: number,
  progress: TokenizeProgress = { chars: 0 },
): Generator<void, EncodingWithOffsets[]> {
  const out: EncodingWithOffsets[] = [];
  let total = 0;
  for (let t = 0; t < texts.length; t++) {
    const text = texts[t];
    const enc: EncodingWithOffsets = { ids: [], offsets: [] };
    for (const [start, end] of tokenizer.splitPieces(text)) {
      const piece = tokenizer.encodeWithOffsets(start === 0 && end === text.length ? text : text.slice(start, end));
      for (let i = 0; i < piece.ids.length; i++) {
        enc.ids.push(piece.ids[i]);
        enc.offsets.push(start === 0 ? piece.offsets[i] : [piece.offsets[i][0] + start, piece.offsets[i][1] + start]);
      }
      progress.chars += end - start;
      total += piece.ids.length;
      progress.tokens = total;
      if (total > maxTokens)
        throw new ToxScopeError('payload_too_large', `the texts have more tokens together than the limit of ${maxTokens} per request (passed in texts[${t}]; refused before tokenizing the rest)`, {
          limit: maxTokens,
          text: t,
          /** what was tokenized before the refusal: at most the budget plus the piece that passed it */
          tokenized: { chars: progress.chars, tokens: total },
        });
      yield;
    }
    if (enc.ids.length === 0) throw validationError(`texts[${t}] has no tokens`);
    out.push(enc);
  }
  return out;
}

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** encodeWithinBudget on this thread, yielding to the event loop every `sliceMs`; stops on abort or deadline. */
export async function tokenizeWithinBudget(
  tokenizer: PieceTokenizer,
  texts: readonly string[],
  { maxTokens, signal, deadline, sliceMs = 10 }: TokenizeBudget,
  progress: TokenizeProgress = { chars: 0 },
): Promise<EncodingWithOffsets[]> {
  const work = encodeWithinBudget(tokenizer, texts, maxTokens, progress);
  let sliceStart = performance.now();
  for (;;) {
    if (performance.now() - sliceStart >= sliceMs) {
      await yieldToLoop();
      sliceStart = performance.now();
    }
    if (signal?.aborted) throw new ToxScopeError('aborted', 'the client went away while its texts were tokenized');
    if (deadline !== undefined && performance.now() > deadline) throw new ToxScopeError('timeout', 'request deadline passed while its texts were tokenized');
    const step = work.next();
    if (step.done) return step.value;
  }
}
