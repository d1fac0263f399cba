/** The files a bundle depends on, and their content digests (what a head is bound to). */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../model/checkpoint.js';
import { resolveSae, type ResolvedSae } from '../model/sae/load.js';
import { HashCache, sha256Files } from './file-hash.js';

/** config.json, the index when sharded, and every safetensors file of a checkpoint. */
export function modelFiles(modelDir: string): string[] {
  const ckpt = Checkpoint.open(modelDir);
  try {
    const files = [join(modelDir, 'config.json'), ...ckpt.fileNames()];
    const index = join(modelDir, 'model.safetensors.index.json');
    if (existsSync(index)) files.push(index);
    return files;
  } finally {
    ckpt.close();
  }
}

export function modelDigest(modelDir: string, cache?: HashCache): string {
  return sha256Files(modelFiles(modelDir), cache);
}

/** The SAE's weight file(s): the .pt file, or cfg.json + weights of a SAELens/sparsify directory. */
export function saeFiles(r: ResolvedSae): string[] {
  if (statSync(r.path).isFile()) return [r.path];
  return readdirSync(r.path).filter((f) => f === 'cfg.json' || f.endsWith('.safetensors')).map((f) => join(r.path, f));
}

export function saeDigest(saePath: string, layer: number, cache?: HashCache): { resolved: ResolvedSae; sha256: string } {
  const resolved = resolveSae(saePath, layer);
  return { resolved, sha256: sha256Files(saeFiles(resolved), cache) };
}
