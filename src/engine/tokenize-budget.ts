/**
 * A request's texts tokenized within its token budget, without holding the event loop: texts are tokenized
 * piece by piece (src/engine/tokenizer-pieces.ts, at most PIECE_CHARS characters per call), the loop yields
 * whenever one slice has run `sliceMs`, and the request is refused as soon as its running token count
 * passes the budget: an over-budget request is never tokenized whole. A client that leaves or a deadline
 * that passes stops the work between pieces.
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
}

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export async function tokenizeWithinBudget(
  tokenizer: Pick<Tokenizer, 'encodeWithOffsets' | 'splitPieces'>,
  texts: readonly string[],
  { maxTokens, signal, deadline, sliceMs = 10 }: TokenizeBudget,
  progress: TokenizeProgress = { chars: 0 },
): Promise<EncodingWithOffsets[]> {
  const out: EncodingWithOffsets[] = [];
  let total = 0;
  let sliceStart = performance.now();
  for (let t = 0; t < texts.length; t++) {
    const text = texts[t];
    const enc: EncodingWithOffsets = { ids: [], offsets: [] };
    for (const [start, end] of tokenizer.splitPieces(text)) {
      if (performance.now() - sliceStart >= sliceMs) {
        await yieldToLoop();
        sliceStart = performance.now();
      }
      if (signal?.aborted) throw new ToxScopeError('aborted', 'the client went away while its texts were tokenized');
      if (deadline !== undefined && performance.now() > deadline) throw new ToxScopeError('timeout', 'request deadline passed while its texts were tokenized');
      const piece = tokenizer.encodeWithOffsets(start === 0 && end === text.length ? text : text.slice(start, end));
      for (let i = 0; i < piece.ids.length; i++) {
        enc.ids.push(piece.ids[i]);
        enc.offsets.push(start === 0 ? piece.offsets[i] : [piece.offsets[i][0] + start, piece.offsets[i][1] + start]);
      }
      progress.chars += end - start;
      total += piece.ids.length;
      if (total > maxTokens)
        throw new ToxScopeError('payload_too_large', `the texts have more tokens together than the limit of ${maxTokens} per request (passed in texts[${t}]; refused before tokenizing the rest)`, {
          limit: maxTokens,
          text: t,
        });
    }
    if (enc.ids.length === 0) throw validationError(`texts[${t}] has no tokens`);
    out.push(enc);
  }
  return out;
}
