/**
 * tinyCheckpoint(): a random Qwen3 checkpoint directory in the exact Hugging Face layout
 * (config.json + model.safetensors, or model-0000i-of-0000n.safetensors + model.safetensors.index.json),
 * seeded, with weight scales like the goldens' (manifest.json weight_init). Fast: tiny shapes by default.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { f32ToBf16 } from '../../src/model/dtypes.js';
import { Qwen3Config, toHfConfigJson } from '../../src/model/families/qwen3.js';
import { TensorToWrite, writeSafetensors } from '../../src/model/safetensors.js';

export interface TinyCheckpointOptions {
  hiddenSize?: number; //       D, default 32
  intermediateSize?: number; // F, default 64
  numLayers?: number; //        default 2
  numHeads?: number; //         H, default 4
  numKvHeads?: number; //       KV, default 2
  headDim?: number; //          hd, default 8 (need not be D / H)
  vocabSize?: number; //        default 512
  rmsNormEps?: number; //       default 1e-6
  ropeTheta?: number; //        default 1e6
  tieWordEmbeddings?: boolean; // default true; false also writes lm_head.weight [vocab, D]
  dtype?: 'BF16' | 'F32'; //    default BF16
  shards?: number; //           1 (default) = model.safetensors; n > 1 = sharded with an index
  seed?: number; //             default 1
  /** where to write; default a fresh temporary directory */
  dir?: string;
}

export interface TinyCheckpoint {
  dir: string;
  config: Qwen3Config;
  /** tensor names in file order */
  tensorNames: string[];
  /** remove the directory (only when it was created here) */
  cleanup(): void;
}

/** std of each weight family, as in the goldens' manifest.json */
const SCALES = { embed: 0.02, q: 0.02, k: 0.02, v: 0.125, o: 0.03, gate: 0.125, up: 0.125, down: 0.02 };

/** mulberry32 uniform in [0, 1) and Box-Muller normals: deterministic for a seed. */
function normalSampler(seed: number): () => number {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

export function tinyCheckpoint(opts: TinyCheckpointOptions = {}): TinyCheckpoint {
  const config: Qwen3Config = {
    hiddenSize: opts.hiddenSize ?? 32,
    intermediateSize: opts.intermediateSize ?? 64,
    numLayers: opts.numLayers ?? 2,
    numHeads: opts.numHeads ?? 4,
    numKvHeads: opts.numKvHeads ?? 2,
    headDim: opts.headDim ?? 8,
    rmsNormEps: opts.rmsNormEps ?? 1e-6,
    ropeTheta: opts.ropeTheta ?? 1e6,
    vocabSize: opts.vocabSize ?? 512,
    tieWordEmbeddings: opts.tieWordEmbeddings ?? true,
    torchDtype: (opts.dtype ?? 'BF16') === 'BF16' ? 'bfloat16' : 'float32',
  };
  const dtype = opts.dtype ?? 'BF16';
  const randn = normalSampler(opts.seed ?? 1);
  const { hiddenSize: D, intermediateSize: F, numHeads: H, numKvHeads: KV, headDim: hd, vocabSize: V } = config;

  const tensor = (shape: number[], fill: () => number): TensorToWrite => {
    const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < values.length; i++) values[i] = fill();
    return dtype === 'BF16' ? { dtype, shape, data: f32ToBf16(values) } : { dtype, shape, data: values };
  };
  const weight = (shape: number[], std: number) => tensor(shape, () => std * randn());
  const norm = (n: number) => tensor([n], () => 1 + 0.1 * randn());

  // HF Linear weights are [out, in].
  const tensors: Record<string, TensorToWrite> = {};
  tensors['model.embed_tokens.weight'] = weight([V, D], SCALES.embed);
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}.`;
    tensors[p + 'input_layernorm.weight'] = norm(D);
    tensors[p + 'self_attn.q_proj.weight'] = weight([H * hd, D], SCALES.q);
    tensors[p + 'self_attn.k_proj.weight'] = weight([KV * hd, D], SCALES.k);
    tensors[p + 'self_attn.v_proj.weight'] = weight([KV * hd, D], SCALES.v);
    tensors[p + 'self_attn.o_proj.weight'] = weight([D, H * hd], SCALES.o);
    tensors[p + 'self_attn.q_norm.weight'] = norm(hd);
    tensors[p + 'self_attn.k_norm.weight'] = norm(hd);
    tensors[p + 'post_attention_layernorm.weight'] = norm(D);
    tensors[p + 'mlp.gate_proj.weight'] = weight([F, D], SCALES.gate);
    tensors[p + 'mlp.up_proj.weight'] = weight([F, D], SCALES.up);
    tensors[p + 'mlp.down_proj.weight'] = weight([D, F], SCALES.down);
  }
  tensors['model.norm.weight'] = norm(D);
  if (!config.tieWordEmbeddings) tensors['lm_head.weight'] = weight([V, D], SCALES.embed);

  const created = opts.dir === undefined;
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'toxscope-tiny-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(toHfConfigJson(config), null, 2));
  const names = Object.keys(tensors);
  const shards = opts.shards ?? 1;
  if (shards <= 1) {
    writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  } else {
    // Contiguous runs of tensors per shard, as transformers' save_pretrained does.
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
  return {
    dir,
    config,
    tensorNames: names,
    cleanup: () => {
      if (created) rmSync(dir, { recursive: true, force: true });
    },
  };
}
