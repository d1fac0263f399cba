/**
 * Read-only access to the shared reference data in ../shared/goldens (see its README.md).
 * Tests only: product code never reads ../shared.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../../src/model/safetensors.js';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const goldensDir = resolve(repoRoot, '..', 'shared', 'goldens');

/** The tiny Qwen3 checkpoint (4 layers, hidden 64, 4 heads / 2 KV, head_dim 16), single file and sharded. */
export const goldenCheckpointDir = join(goldensDir, 'qwen3-tiny-bf16');
export const goldenShardedCheckpointDir = join(goldensDir, 'qwen3-tiny-bf16-sharded');

export interface GoldenManifest {
  sequences: number[][];
  tensors: Record<string, { dtype: string; shape: number[] }>;
  conventions: Record<string, string>;
  [key: string]: unknown;
}

export function readManifest(name = 'manifest.json'): GoldenManifest {
  return JSON.parse(readFileSync(join(goldensDir, name), 'utf8')) as GoldenManifest;
}

export interface GoldenTensor<T> {
  shape: number[];
  data: T;
}

/** One golden file, opened lazily; tensors come back with their shape. */
export class Goldens {
  private readonly file: SafetensorsFile;

  constructor(name = 'goldens.safetensors') {
    this.file = SafetensorsFile.open(join(goldensDir, name));
  }

  f32(name: string): GoldenTensor<Float32Array> {
    return { shape: this.file.info(name).shape, data: this.file.readF32(name) };
  }

  /** int64 tensors (ids, masks, positions) as plain numbers. */
  ints(name: string): GoldenTensor<number[]> {
    const info = this.file.info(name);
    const raw = this.file.readTyped(name);
    if (!(raw instanceof BigInt64Array)) throw new Error(`golden tensor '${name}' is ${info.dtype}, expected I64`);
    return { shape: info.shape, data: Array.from(raw, Number) };
  }

  /** int32 tensors (router expert ids) as they are stored. */
  i32(name: string): GoldenTensor<Int32Array> {
    const raw = this.file.readTyped(name);
    if (!(raw instanceof Int32Array)) throw new Error(`golden tensor '${name}' is ${this.file.info(name).dtype}, expected I32`);
    return { shape: this.file.info(name).shape, data: raw };
  }

  /** An int64 [B, T] tensor as rows. */
  rows(name: string): number[][] {
    const { shape, data } = this.ints(name);
    const [B, T] = shape;
    return Array.from({ length: B }, (_, b) => data.slice(b * T, (b + 1) * T));
  }

  close(): void {
    this.file.close();
  }
}
