/**
 * `toxscope residual`: the raw residual stream after one decoder layer for given token ids or texts,
 * written as safetensors (resid_post float32 [B, T, D], attention_mask int64 [B, T]). For debugging and
 * for checking the engine against other implementations.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ForwardEngine } from '../engine/forward-engine.js';
import type { Padding } from '../engine/padding.js';
import { loadTokenizer } from '../engine/tokenizer.js';
import { writeSafetensors } from '../model/safetensors.js';
import type { Provider } from '../runtime/session.js';
import { UsageError, parseChoice, parseFlags, parseIntFlag, requireString, parseEngineFlags } from './args.js';
import { cliEnvironment } from './environment.js';
import type { CliIO, Command } from './main.js';

const USAGE = `usage: toxscope residual --model <checkpoint dir> --layer <L> --out <file.safetensors>
                         [--ids '<JSON list of token-id lists>'] [--text '<string>' ...]
                         [--padding right|left] [--cache-dir <dir>] [--threads <n>] [--provider cpu|cuda]

  --model      Hugging Face checkpoint directory (qwen3, qwen3_moe, qwen3_5, ...: config.json + safetensors; a
               Qwen3.5 directory needs its tokenizer.json)
  --layer      0-based decoder layer; the output is the residual stream after it (before model.norm)
  --ids        token ids, e.g. '[[9707, 1879], [151643]]'
  --text       a text to tokenize (repeatable); rows from --ids come first, then one row per --text
  --padding    how rows of different lengths are padded (default right)
  --out        output file: resid_post float32 [B, T, D], attention_mask int64 [B, T]
  --cache-dir  where built graphs are cached (default $TOXSCOPE_DATA_DIR/graph-cache, else .toxscope/graph-cache)
  --threads    onnxruntime intra-op threads (default: one per core)
  --provider   execution provider (default cpu; cuda falls back to cpu with a warning)`;

const FLAGS = {
  model: { type: 'string' },
  layer: { type: 'string' },
  ids: { type: 'string' },
  text: { type: 'string', multiple: true },
  padding: { type: 'string', default: 'right' },
  out: { type: 'string' },
  'cache-dir': { type: 'string' },
  threads: { type: 'string' },
  provider: { type: 'string', default: 'cpu' },
} as const;

/** '[[1,2],[3]]' -> [[1,2],[3]], or a UsageError saying what is wrong. */
export function parseIdsFlag(raw: string): number[][] {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw new UsageError(`--ids is not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(v) || v.length === 0 || !v.every((row) => Array.isArray(row)))
    throw new UsageError(`--ids must be a non-empty JSON list of token-id lists, e.g. '[[9707, 1879]]'`);
  v.forEach((row: unknown[], b) => {
    if (row.length === 0) throw new UsageError(`--ids: sequence ${b} is empty`);
    row.forEach((id, t) => {
      if (!Number.isSafeInteger(id) || (id as number) < 0) throw new UsageError(`--ids: sequence ${b}, position ${t}: ${JSON.stringify(id)} is not a non-negative integer`);
    });
  });
  return v as number[][];
}

/** Token-id rows from --ids, then one row per --text (tokenized with the checkpoint's tokenizer). */
export async function inputRows(f: Record<string, unknown>, modelDir: string): Promise<number[][]> {
  const texts = (f.text as string[] | undefined) ?? [];
  if (f.ids === undefined && texts.length === 0) throw new UsageError('give token ids with --ids or texts with --text');
  const rows = f.ids === undefined ? [] : parseIdsFlag(f.ids as string);
  if (texts.length) {
    const tok = await loadTokenizer(modelDir);
    texts.forEach((t, i) => {
      const ids = tok.encode(t);
      if (ids.length === 0) throw new UsageError(`--text number ${i + 1} encodes to no tokens`);
      rows.push(ids);
    });
  }
  return rows;
}

async function run(argv: string[], io: CliIO): Promise<number> {
  const f = parseFlags(argv, FLAGS);
  const modelDir = requireString(f, 'model');
  const layer = parseIntFlag(requireString(f, 'layer'), 'layer');
  const out = requireString(f, 'out');
  const padding = parseChoice(f.padding as string, 'padding', ['right', 'left'] as const satisfies readonly Padding[]);
  const { provider, threads } = parseEngineFlags(f);
  const rows = await inputRows(f, modelDir);

  const engine = await ForwardEngine.open({ modelDir, layer, cacheDir: typeof f['cache-dir'] === 'string' ? resolve(f['cache-dir']) : join(cliEnvironment(undefined, io).dataDir, 'graph-cache'), provider, threads, warn: (m) => io.stderr(`warning: ${m}\n`) });
  try {
    const r = await engine.runResidual(rows, padding);
    mkdirSync(dirname(resolve(out)), { recursive: true });
    writeSafetensors(
      out,
      {
        resid_post: { dtype: 'F32', shape: [r.batch, r.seqLen, r.dModel], data: r.resid },
        attention_mask: { dtype: 'I64', shape: [r.batch, r.seqLen], data: BigInt64Array.from(r.mask, (m) => BigInt(m)) },
      },
      { layer: String(layer), padding, model: resolve(modelDir), provider: engine.info.provider },
    );
    io.stdout(`wrote ${out}: resid_post [${r.batch}, ${r.seqLen}, ${r.dModel}], attention_mask [${r.batch}, ${r.seqLen}] (layer ${layer}, ${padding} padding, ${engine.info.provider})\n`);
    return 0;
  } finally {
    await engine.close();
  }
}

export const residualCommand: Command = {
  name: 'residual',
  summary: 'Write the residual stream after a decoder layer for token ids or texts (safetensors).',
  usage: USAGE,
  run,
};
