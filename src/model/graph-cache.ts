/**
 * Built graphs cached on disk: `<cacheDir>/<key>/{model.onnx, weights.bin, meta.json}`, where the key hashes
 * everything the graph depends on: builder version, the family and its graph version, parsed config, layer, the checkpoint files' identity
 * (path, size, mtime), the SAE's contents when fused, and the weight dtype. A build goes to a temporary
 * directory renamed into place at the end, so a crashed or concurrent build never leaves a half entry.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { formatError } from '../errors.js';
import type { Checkpoint } from './checkpoint.js';
import { GRAPH_BUILDER_VERSION, type GraphOptions, MODEL_FILE, buildModelGraph, type WeightDtype } from './graph.js';
import { INT8_GRAPH_CHOICES } from './blocks/int8.js';
import type { TopKSae } from './sae/types.js';

export interface CachedGraph {
  key: string;
  dir: string;
  modelPath: string;
  outputs: string[];
  /** false when an earlier build was reused */
  built: boolean;
  buildSeconds: number;
}

interface Meta {
  key: string;
  outputs: string[];
  describe: unknown;
}

export function graphCacheKey(ckpt: Checkpoint, layer: number, sae: TopKSae | null | undefined, weightDtype: WeightDtype = 'f32', options: GraphOptions = {}): { key: string; describe: unknown } {
  const files = [join(ckpt.dir, 'config.json'), ...ckpt.fileNames()].map((f) => {
    const st = statSync(f);
    return { path: resolve(f), size: st.size, mtimeMs: st.mtimeMs };
  });
  const describe = {
    builder: GRAPH_BUILDER_VERSION,
    family: ckpt.arch.family,
    familyVersion: ckpt.arch.familyVersion,
    dtype: weightDtype,
    ...(weightDtype === 'int8' ? { int8: INT8_GRAPH_CHOICES } : {}),
    config: ckpt.config,
    layer,
    files,
    sae: sae ? saeIdentity(sae) : null,
    options,
  };
  const key = createHash('sha256').update(JSON.stringify(describe)).digest('hex').slice(0, 32);
  return { key: `${ckpt.arch.family}-L${layer}${sae ? '-sae' : ''}${weightDtype === 'f32' ? '' : `-${weightDtype}`}-${key}`, describe };
}

/** Content hash of the SAE's encoder (what the fused graph embeds). */
function saeIdentity(sae: TopKSae): Record<string, unknown> {
  const h = createHash('sha256');
  for (const a of [sae.wEnc, sae.bEnc, sae.inputBias]) {
    if (a) h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    h.update('|');
  }
  return { dModel: sae.dModel, dSae: sae.dSae, k: sae.k, sha256: h.digest('hex') };
}

/** The cached graph for (checkpoint, layer, sae), building it first when absent. */
export function ensureGraph(cacheDir: string, ckpt: Checkpoint, layer: number, sae?: TopKSae | null, weightDtype: WeightDtype = 'f32', options: GraphOptions = {}): CachedGraph {
  const { key, describe } = graphCacheKey(ckpt, layer, sae, weightDtype, options);
  const dir = join(cacheDir, key);
  const cached = readMeta(dir);
  if (cached) return { key, dir, modelPath: join(dir, MODEL_FILE), outputs: cached.outputs, built: false, buildSeconds: 0 };

  try {
    mkdirSync(cacheDir, { recursive: true });
  } catch (e) {
    throw formatError(`${cacheDir}: cannot create the graph cache directory (${(e as Error).message})`);
  }
  const tmp = join(cacheDir, `.${key}.tmp-${process.pid}-${Date.now()}`);
  mkdirSync(tmp);
  const t0 = performance.now();
  try {
    const built = buildModelGraph({ arch: ckpt.arch, layer, weights: ckpt, sae, weightDtype, options }, tmp);
    const meta: Meta = { key, outputs: built.outputs, describe };
    writeFileSync(join(tmp, 'meta.json'), JSON.stringify(meta, null, 1));
    try {
      renameSync(tmp, dir);
    } catch (e) {
      // Another process finished the same build first: use its copy.
      if (!readMeta(dir)) throw e;
      rmSync(tmp, { recursive: true, force: true });
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const meta = readMeta(dir);
  if (!meta) throw formatError(`${dir}: graph cache entry is incomplete after building`);
  return { key, dir, modelPath: join(dir, MODEL_FILE), outputs: meta.outputs, built: true, buildSeconds: (performance.now() - t0) / 1000 };
}

function readMeta(dir: string): Meta | null {
  const path = join(dir, 'meta.json');
  if (!existsSync(path) || !existsSync(join(dir, MODEL_FILE))) return null;
  try {
    const meta = JSON.parse(readFileSync(path, 'utf8')) as Meta;
    return Array.isArray(meta.outputs) ? meta : null;
  } catch {
    return null;
  }
}
