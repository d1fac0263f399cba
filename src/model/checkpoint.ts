/**
 * A Hugging Face checkpoint directory: config.json plus either model.safetensors or sharded
 * model-*.safetensors with model.safetensors.index.json (weight_map: tensor -> file). config.json is parsed by
 * the family its model_type names (./families/registry.ts); this file knows no family. Tensors are read lazily,
 * one at a time: as float32, or as their raw stored bytes.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { formatError, ToxScopeError } from '../errors.js';
import { ARTIFACT_LIMITS, clip, readJsonFile } from './artifact-limits.js';
import type { BaseConfig, ModelArch } from './families/family.js';
import { readModelConfig } from './families/registry.js';
import { SafetensorsFile, TensorInfo } from './safetensors.js';

/** Where weights come from: the engine, the reference forward pass and the graph builder all read through this. */
export interface WeightSource {
  has(name: string): boolean;
  info(name: string): TensorInfo;
  /** the tensor as float32, row-major in its stored shape */
  readF32(name: string): Float32Array;
  /** the tensor's stored little-endian bytes, in its stored dtype (info(name).dtype); the caller owns the buffer */
  readRaw(name: string): Uint8Array;
  close(): void;
}

export class Checkpoint implements WeightSource {
  readonly dir: string;
  /** the family and its parsed config */
  readonly arch: ModelArch;
  private readonly files: Map<string, SafetensorsFile>;
  private readonly where: Map<string, SafetensorsFile>;

  private constructor(dir: string, arch: ModelArch, files: Map<string, SafetensorsFile>, where: Map<string, SafetensorsFile>) {
    this.dir = dir;
    this.arch = arch;
    this.files = files;
    this.where = where;
  }

  static open(dir: string): Checkpoint {
    if (!existsSync(dir)) throw formatError(`${dir}: model directory does not exist`);
    const arch = readModelConfig(dir);
    const files = new Map<string, SafetensorsFile>();
    const where = new Map<string, SafetensorsFile>();
    const index = join(dir, 'model.safetensors.index.json');
    try {
      if (existsSync(index)) {
        let weightMap: Record<string, string>;
        try {
          weightMap = (readJsonFile(index, ARTIFACT_LIMITS.smallJsonBytes, 'checkpoint index') as { weight_map: Record<string, string> }).weight_map;
        } catch (e) {
          if (e instanceof ToxScopeError) throw e;
          throw formatError(`${index}: has no weight_map object`);
        }
        if (typeof weightMap !== 'object' || weightMap === null) throw formatError(`${index}: has no weight_map object`);
        for (const [tensor, file] of Object.entries(weightMap)) {
          if (typeof file !== 'string' || file.includes('/') || file.includes('\\'))
            throw formatError(`${index}: weight_map entry for '${clip(tensor)}' is not a file name in the directory`);
          let st = files.get(file);
          if (!st) files.set(file, (st = SafetensorsFile.open(join(dir, file))));
          if (!st.tensors.has(tensor)) throw formatError(`${join(dir, file)}: index says it holds '${clip(tensor)}' but it does not`);
          where.set(tensor, st);
        }
      } else {
        const single = join(dir, 'model.safetensors');
        if (!existsSync(single)) {
          const found = readdirSync(dir).filter((f) => f.endsWith('.safetensors'));
          throw formatError(`${dir}: no model.safetensors and no model.safetensors.index.json` + (found.length ? ` (found ${found.join(', ')})` : ''));
        }
        const st = SafetensorsFile.open(single);
        files.set('model.safetensors', st);
        for (const name of st.tensors.keys()) where.set(name, st);
      }
    } catch (e) {
      for (const f of files.values()) f.close();
      throw e;
    }
    return new Checkpoint(dir, arch, files, where);
  }

  /** The family-independent part of the config (sizes every family has). */
  get config(): BaseConfig {
    return this.arch.config;
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  info(name: string): TensorInfo {
    const st = this.where.get(name);
    if (!st) throw formatError(`${this.dir}: checkpoint has no tensor '${name}'`);
    return st.info(name);
  }

  readF32(name: string): Float32Array {
    const st = this.where.get(name);
    if (!st) throw formatError(`${this.dir}: checkpoint has no tensor '${name}'`);
    return st.readF32(name);
  }

  readRaw(name: string): Uint8Array {
    const st = this.where.get(name);
    if (!st) throw formatError(`${this.dir}: checkpoint has no tensor '${name}'`);
    return st.readBytes(name);
  }

  /** Every tensor name the checkpoint holds. */
  names(): string[] {
    return [...this.where.keys()];
  }

  /** Files with their sizes, for content hashing of bundles and graph cache keys. */
  fileNames(): string[] {
    return [...this.files.values()].map((f) => f.path);
  }

  close(): void {
    for (const f of this.files.values()) f.close();
  }
}

/**
 * Assert the checkpoint can run to `layer`: the layer exists, and every tensor the family needs up to it is
 * present with its shape and a float dtype (all checked before anything is read or built).
 */
export function assertRunnableTo(ckpt: WeightSource & { dir?: string }, arch: ModelArch, layer: number): void {
  const where = ckpt.dir ?? 'checkpoint';
  const n = arch.config.numLayers;
  if (!Number.isInteger(layer) || layer < 0 || layer >= n)
    throw formatError(`${where}: layer ${layer} is out of range: the model has ${n} decoder layers (0..${n - 1})`, { layer, numLayers: n });
  const missing: string[] = [];
  for (const [name, shape] of arch.requiredTensors(layer)) {
    if (!ckpt.has(name)) { missing.push(name); continue; }
    const info = ckpt.info(name);
    if (!['F32', 'BF16', 'F16'].includes(info.dtype)) throw formatError(`${info.file}: tensor '${name}' has dtype ${info.dtype}, expected a float type`);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i]))
      throw formatError(`${info.file}: tensor '${name}' has shape [${info.shape}] but config.json implies [${shape}]`, { tensor: name });
  }
  if (missing.length)
    throw formatError(`${where}: checkpoint is missing ${missing.length} tensor(s) needed up to layer ${layer}: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`, { missing });
}
