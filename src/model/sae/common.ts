/** Helpers shared by the SAE loaders: options, shape checks, transposes, config field readers. */
import { formatError, validationError } from '../../errors.js';

export interface LoadSaeOptions {
  /** the layer the caller wants: picks the file in a directory of layers, and must agree with what the files say */
  layer?: number;
  /** k for formats without a config (Qwen-Scope); must agree with the config where there is one */
  k?: number;
  /** also load the decoder weights (wDec [dModel, dSae]); off by default: encoding never needs them */
  decoder?: boolean;
}

/** Anything with tensor shapes by name: TorchFile and SafetensorsFile both fit. */
export interface ShapeSource {
  has(name: string): boolean;
  info(name: string): { shape: number[] };
  readF32(name: string): Float32Array;
}

export function expectShape(where: string, src: ShapeSource, name: string, expected: number[], what: string): void {
  if (!src.has(name)) throw formatError(`${where}: missing tensor '${name}' (${what})`);
  const shape = src.info(name).shape;
  if (shape.length !== expected.length || shape.some((d, i) => d !== expected[i]))
    throw formatError(`${where}: tensor '${name}' has shape [${shape}], expected [${expected}] (${what})`);
}

/** [rows, cols] row-major -> [cols, rows] row-major */
export function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = m[base + c];
  }
  return out;
}

export function checkK(where: string, k: number, dSae: number): number {
  if (!Number.isSafeInteger(k) || k < 1 || k > dSae) throw validationError(`${where}: k = ${k} must be an integer in [1, d_sae = ${dSae}]`);
  return k;
}

/** The layer the files say, reconciled with the layer the caller asked for. */
export function reconcileLayer(where: string, fromFiles: number | undefined, requested: number | undefined): number | undefined {
  if (fromFiles !== undefined && requested !== undefined && fromFiles !== requested)
    throw validationError(`${where}: this SAE reads layer ${fromFiles}, but layer ${requested} was requested`);
  return fromFiles ?? requested;
}

export function dims(src: ShapeSource, name: string): number[] {
  return src.info(name).shape;
}
