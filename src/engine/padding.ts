/** Token-id lists padded into the int64 [B, T] ids + attention mask the graph reads. */
import { validationError } from '../errors.js';

export type Padding = 'right' | 'left';

/** Qwen3's <|endoftext|>, the pad token of its tokenizer config. */
export const QWEN3_PAD_ID = 151643;

export interface PaddedBatch {
  batch: number; //    B
  seqLen: number; //   T = the longest sequence
  ids: BigInt64Array; // [B, T]
  mask: BigInt64Array; // [B, T] 1 for real tokens, 0 for padding
  lengths: number[]; // real tokens per row
}

export function padBatch(seqs: readonly (readonly number[])[], padding: Padding = 'right', padId = QWEN3_PAD_ID): PaddedBatch {
  if (padding !== 'right' && padding !== 'left') throw validationError(`padding must be 'right' or 'left', got ${JSON.stringify(padding)}`);
  if (!Array.isArray(seqs) || seqs.length === 0) throw validationError('a batch needs at least one sequence');
  seqs.forEach((s, b) => {
    if (!Array.isArray(s) || s.length === 0) throw validationError(`sequence ${b} is empty: every sequence needs at least one token`);
    s.forEach((id, t) => {
      if (!Number.isSafeInteger(id) || id < 0) throw validationError(`sequence ${b}, position ${t}: token id ${JSON.stringify(id)} is not a non-negative integer`);
    });
  });
  const B = seqs.length;
  const T = Math.max(...seqs.map((s) => s.length));
  const ids = new BigInt64Array(B * T).fill(BigInt(padId));
  const mask = new BigInt64Array(B * T);
  seqs.forEach((s, b) => {
    const start = b * T + (padding === 'left' ? T - s.length : 0);
    for (let t = 0; t < s.length; t++) {
      ids[start + t] = BigInt(s[t]);
      mask[start + t] = 1n;
    }
  });
  return { batch: B, seqLen: T, ids, mask, lengths: seqs.map((s) => s.length) };
}
