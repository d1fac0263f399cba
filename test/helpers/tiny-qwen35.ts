/**
 * tinyQwen35Checkpoint(): a random Qwen3.5 (qwen3_5) checkpoint directory in the exact Hugging Face layout of the
 * real vision-language checkpoints: nested config.json, text weights under `model.language_model.`, a few
 * `model.visual.*` and `mtp.*` dummies, BF16 except the F32 `A_log` and gated-norm weights, single file or sharded
 * (a layer's tensors may straddle two files). Weight scales follow the goldens' manifest (weight_init), so decays
 * and gates land where real models put them.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packagedTokenizerPath } from '../../src/engine/tokenizer.js';
import { f32ToBf16 } from '../../src/model/dtypes.js';
import { type LayerType, type Qwen35Config, qwen35RequiredTensors, toQwen35HfConfigJson } from '../../src/model/families/qwen3_5.js';
import { type TensorToWrite, writeSafetensors } from '../../src/model/safetensors.js';
import { Rng } from '../../src/util/random.js';

export interface TinyQwen35Options {
  hiddenSize?: number; //        D, default 32
  intermediateSize?: number; //  default 48
  numLayers?: number; //         default 4
  layerTypes?: LayerType[]; //   default: full attention every 4th layer
  numHeads?: number; //          attention heads, default 4
  numKvHeads?: number; //        default 2
  headDim?: number; //           default 16
  rotaryDim?: number; //         default headDim / 4
  keyHeads?: number; //          DeltaNet Hk, default 2
  valueHeads?: number; //        DeltaNet Hv, default 2 (4 = two value heads per key head)
  keyHeadDim?: number; //        default 8
  valueHeadDim?: number; //      default 8
  convKernel?: number; //        default 4
  vocabSize?: number; //         default 512
  tieWordEmbeddings?: boolean; // default true; false also writes lm_head.weight
  shards?: number; //            default 1
  seed?: number;
  dir?: string;
  /** also write a small Qwen-style tokenizer.json fitting the vocabulary (writeSmallQwenTokenizer) */
  tokenizer?: boolean;
}

export interface TinyQwen35 {
  dir: string;
  config: Qwen35Config;
  cleanup(): void;
}

export function tinyQwen35Config(o: TinyQwen35Options = {}): Qwen35Config {
  const numLayers = o.numLayers ?? 4;
  const headDim = o.headDim ?? 16;
  return {
    modelType: 'qwen3_5',
    hiddenSize: o.hiddenSize ?? 32,
    intermediateSize: o.intermediateSize ?? 48,
    numLayers,
    vocabSize: o.vocabSize ?? 512,
    rmsNormEps: 1e-6,
    tieWordEmbeddings: o.tieWordEmbeddings ?? true,
    layerTypes: o.layerTypes ?? Array.from({ length: numLayers }, (_, l) => ((l + 1) % 4 === 0 ? 'full_attention' : 'linear_attention')),
    attention: { numHeads: o.numHeads ?? 4, numKvHeads: o.numKvHeads ?? 2, headDim, ropeTheta: 1e7, rotaryDim: o.rotaryDim ?? headDim / 4 },
    deltaNet: {
      numKeyHeads: o.keyHeads ?? 2,
      numValueHeads: o.valueHeads ?? 2,
      keyHeadDim: o.keyHeadDim ?? 8,
      valueHeadDim: o.valueHeadDim ?? 8,
      convKernel: o.convKernel ?? 4,
    },
    torchDtype: 'bfloat16',
  };
}

/** std of each weight by name suffix (the goldens' manifest weight_init) */
const STD: [RegExp, number][] = [
  [/embed_tokens|lm_head/, 0.02],
  [/q_proj/, 0.125], [/k_proj/, 0.02], [/v_proj/, 0.125], [/o_proj/, 0.03],
  [/gate_proj|up_proj/, 0.125], [/down_proj/, 0.02],
  [/in_proj_qkv|in_proj_z/, 0.125], [/out_proj/, 0.03], [/conv1d/, 0.3],
];

export function tinyQwen35Checkpoint(o: TinyQwen35Options = {}): TinyQwen35 {
  const c = tinyQwen35Config(o);
  const rng = new Rng(o.seed ?? 35);
  const D = c.hiddenSize;
  const cycle = (arr: number[], n: number) => Array.from({ length: n }, (_, i) => arr[i % arr.length]);
  const f32 = (shape: number[], values: ArrayLike<number>): TensorToWrite => ({ dtype: 'F32', shape, data: Float32Array.from(values) });
  const bf16 = (shape: number[], values: ArrayLike<number>): TensorToWrite => ({ dtype: 'BF16', shape, data: f32ToBf16(Float32Array.from(values)) });
  const normal = (n: number, std: number, mean = 0) => Array.from({ length: n }, () => mean + std * rng.normal());

  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, shape] of qwen35RequiredTensors(c, c.numLayers - 1)) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (name.endsWith('layernorm.weight') || name.endsWith('q_norm.weight') || name.endsWith('k_norm.weight')) tensors[name] = bf16(shape, normal(n, 0.1)); // zero-centred
    else if (name.endsWith('linear_attn.norm.weight')) tensors[name] = f32(shape, normal(n, 0.1, 1));
    else if (name.endsWith('A_log')) tensors[name] = f32(shape, cycle([0.02, 0.08, 0.2, 0.3], n).map((a) => Math.log(a) + 0.05 * rng.normal()));
    else if (name.endsWith('dt_bias')) tensors[name] = bf16(shape, cycle([0.3, 0.5, 0.8, 0.9], n).map((s) => Math.log(Math.expm1(s)) + 0.05 * rng.normal()));
    else if (name.endsWith('in_proj_b.weight')) tensors[name] = bf16(shape, normal(n, 0.8 / Math.sqrt(D)));
    else if (name.endsWith('in_proj_a.weight')) tensors[name] = bf16(shape, normal(n, 0.3 / Math.sqrt(D)));
    else {
      const std = STD.find(([re]) => re.test(name))?.[1];
      if (std === undefined) throw new Error(`tinyQwen35Checkpoint: no scale for ${name}`);
      tensors[name] = bf16(shape, normal(n, std));
    }
  }
  tensors['model.language_model.norm.weight'] = bf16([D], normal(D, 0.1));
  if (!c.tieWordEmbeddings) tensors['lm_head.weight'] = bf16([c.vocabSize, D], normal(c.vocabSize * D, 0.02));
  // Present in real checkpoints, never read by the text engine.
  tensors['model.visual.patch_embed.proj.weight'] = bf16([8, 3, 2, 2, 2], normal(192, 0.02));
  tensors['model.visual.merger.linear_fc2.weight'] = bf16([D, 16], normal(D * 16, 0.02));
  tensors['mtp.fc.weight'] = bf16([D, 2 * D], normal(2 * D * D, 0.02));
  tensors['mtp.norm.weight'] = bf16([D], normal(D, 0.1));

  const created = o.dir === undefined;
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'toxscope-tiny-qwen35-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(toQwen35HfConfigJson(c), null, 2));
  writeShards(dir, tensors, o.shards ?? 1);
  if (o.tokenizer) writeSmallQwenTokenizer(dir, Math.min(400, c.vocabSize - 3));
  return { dir, config: c, cleanup: () => { if (created) rmSync(dir, { recursive: true, force: true }); } };
}

/** model.safetensors, or n shards (contiguous runs of tensors, as save_pretrained writes them) + the index. */
export function writeShards(dir: string, tensors: Record<string, TensorToWrite>, shards: number): void {
  if (shards <= 1) {
    writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    return;
  }
  const names = Object.keys(tensors);
  const pad = (i: number) => String(i).padStart(5, '0');
  const perShard = Math.ceil(names.length / shards);
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  for (let s = 0; s < shards; s++) {
    const file = `model-${pad(s + 1)}-of-${pad(shards)}.safetensors`;
    const part: Record<string, TensorToWrite> = {};
    for (const name of names.slice(s * perShard, (s + 1) * perShard)) {
      part[name] = tensors[name];
      weightMap[name] = file;
      totalSize += tensors[name].data.byteLength;
    }
    writeSafetensors(join(dir, file), part, { format: 'pt' });
  }
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2));
}

/**
 * A real Qwen-style tokenizer.json + tokenizer_config.json with a small vocabulary, written into `dir`: Qwen3's
 * own tokenizer (the packaged one) cut to its first `baseTokens` ids (the 256 byte tokens come first, so every
 * text still encodes) and the merges among them, plus <|endoftext|>, <|im_start|>, <|im_end|> as added tokens
 * right after. Ids stay below baseTokens + 3: it fits a tiny checkpoint's embedding, the way a Qwen3.5
 * checkpoint ships the tokenizer of its own vocabulary.
 */
export function writeSmallQwenTokenizer(dir: string, baseTokens = 400): { maxId: number } {
  const packaged = JSON.parse(readFileSync(packagedTokenizerPath(), 'utf8')) as {
    model: { vocab: Record<string, number>; merges: [string, string][] };
    added_tokens: { id: number; content: string }[];
  };
  const vocab = Object.fromEntries(Object.entries(packaged.model.vocab).filter(([, id]) => id < baseTokens));
  const merges = packaged.model.merges.filter(([a, b]) => vocab[a] !== undefined && vocab[b] !== undefined && vocab[a + b] !== undefined);
  const special = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
  const added = special.map((content, i) => ({ ...packaged.added_tokens.find((t) => t.content === content)!, id: baseTokens + i }));
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({ ...packaged, model: { ...packaged.model, vocab, merges }, added_tokens: added }));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'Qwen2Tokenizer', pad_token: '<|endoftext|>', eos_token: '<|im_end|>', add_bos_token: false, bos_token: null }));
  return { maxId: baseTokens + special.length - 1 };
}
