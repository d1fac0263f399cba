/**
 * tinyQwen35MoeCheckpoint(): a random Qwen3.5-MoE (qwen3_5_moe) checkpoint in the exact layout of
 * Qwen3.5-35B-A3B's files: nested config.json, text weights under `model.language_model.`, fused expert tensors
 * (`mlp.experts.gate_up_proj` [E, 2I, D], `mlp.experts.down_proj` [E, D, I]), a shared expert and its gate, a few
 * `model.visual.*` / `mtp.*` dummies; BF16 except the F32 `A_log` and gated-norm weights; single file or sharded.
 * Weight scales follow the goldens' manifest (router std 2 / sqrt(D) so routing decisions are clear).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { f32ToBf16 } from '../../src/model/dtypes.js';
import { type Qwen35MoeConfig, qwen35MoeArch, toQwen35MoeHfConfigJson } from '../../src/model/families/qwen3_5_moe.js';
import type { TensorToWrite } from '../../src/model/safetensors.js';
import { Rng } from '../../src/util/random.js';
import { type TinyQwen35Options, tinyQwen35Config, writeShards } from './tiny-qwen35.js';

export interface TinyQwen35MoeOptions extends Omit<TinyQwen35Options, 'intermediateSize' | 'tokenizer'> {
  numExperts?: number; //        default 6
  topK?: number; //              default 2
  expertWidth?: number; //       I, default 24
  sharedExpertWidth?: number; // S, default 32
}

export interface TinyQwen35Moe {
  dir: string;
  config: Qwen35MoeConfig;
  cleanup(): void;
}

const STD: [RegExp, number][] = [
  [/embed_tokens|lm_head/, 0.02],
  [/q_proj/, 0.125], [/k_proj/, 0.02], [/v_proj/, 0.125], [/o_proj/, 0.03],
  [/shared_expert_gate/, 0.125], [/gate_up_proj|gate_proj|up_proj/, 0.125], [/down_proj/, 0.02],
  [/in_proj_qkv|in_proj_z/, 0.125], [/out_proj/, 0.03], [/conv1d/, 0.3],
];

export function tinyQwen35MoeCheckpoint(o: TinyQwen35MoeOptions = {}): TinyQwen35Moe {
  const { intermediateSize: _, modelType: __, ...hybrid } = tinyQwen35Config(o);
  const c: Qwen35MoeConfig = { ...hybrid, modelType: 'qwen3_5_moe', numExperts: o.numExperts ?? 6, topK: o.topK ?? 2, expertWidth: o.expertWidth ?? 24, sharedExpertWidth: o.sharedExpertWidth ?? 32 };
  const rng = new Rng(o.seed ?? 53);
  const D = c.hiddenSize;
  const cycle = (arr: number[], n: number) => Array.from({ length: n }, (_, i) => arr[i % arr.length]);
  const f32 = (shape: number[], values: ArrayLike<number>): TensorToWrite => ({ dtype: 'F32', shape, data: Float32Array.from(values) });
  const bf16 = (shape: number[], values: ArrayLike<number>): TensorToWrite => ({ dtype: 'BF16', shape, data: f32ToBf16(Float32Array.from(values)) });
  const normal = (n: number, std: number, mean = 0) => Array.from({ length: n }, () => mean + std * rng.normal());

  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, shape] of qwen35MoeArch(c).requiredTensors(c.numLayers - 1)) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (name.endsWith('layernorm.weight') || name.endsWith('q_norm.weight') || name.endsWith('k_norm.weight')) tensors[name] = bf16(shape, normal(n, 0.1)); // zero-centred
    else if (name.endsWith('linear_attn.norm.weight')) tensors[name] = f32(shape, normal(n, 0.1, 1));
    else if (name.endsWith('A_log')) tensors[name] = f32(shape, cycle([0.02, 0.08, 0.2, 0.3], n).map((a) => Math.log(a) + 0.05 * rng.normal()));
    else if (name.endsWith('dt_bias')) tensors[name] = bf16(shape, cycle([0.3, 0.5, 0.8, 0.9], n).map((s) => Math.log(Math.expm1(s)) + 0.05 * rng.normal()));
    else if (name.endsWith('in_proj_b.weight')) tensors[name] = bf16(shape, normal(n, 0.8 / Math.sqrt(D)));
    else if (name.endsWith('in_proj_a.weight')) tensors[name] = bf16(shape, normal(n, 0.3 / Math.sqrt(D)));
    else if (name.endsWith('mlp.gate.weight')) tensors[name] = bf16(shape, normal(n, 2 / Math.sqrt(D)));
    else {
      const std = STD.find(([re]) => re.test(name))?.[1];
      if (std === undefined) throw new Error(`tinyQwen35MoeCheckpoint: no scale for ${name}`);
      tensors[name] = bf16(shape, normal(n, std));
    }
  }
  tensors['model.language_model.norm.weight'] = bf16([D], normal(D, 0.1));
  if (!c.tieWordEmbeddings) tensors['lm_head.weight'] = bf16([c.vocabSize, D], normal(c.vocabSize * D, 0.02));
  tensors['model.visual.patch_embed.proj.weight'] = bf16([8, 3, 2, 2, 2], normal(192, 0.02));
  tensors['mtp.fc.weight'] = bf16([D, 2 * D], normal(2 * D * D, 0.02));

  const dir = mkdtempSync(join(tmpdir(), 'toxscope-tiny-qwen35-moe-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(toQwen35MoeHfConfigJson(c), null, 2));
  writeShards(dir, tensors, o.shards ?? 1);
  return { dir, config: c, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
