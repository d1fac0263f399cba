/**
 * Re-bound copies of a trained bundle, for reload tests and `bench reload`: the attacker (or an operator's
 * mistake) controls every file of a bundle, hashes included, so each copy points at a replaced model or SAE
 * and carries the hashes that make the head accept it; the parsers and the warm-up are what must hold.
 */
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { modelDigest, saeDigest } from '../../src/bundle/artifacts.js';
import { readBundle } from '../../src/bundle/load.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../src/model/safetensors.js';
import { goldenCheckpointDir } from './goldens.js';

let n = 0;

/**
 * A copy of the trained bundle pointing at `model` / `sae` (absolute), with the head's trained_for, the
 * manifest's hashes and the head's sha256 re-bound to them (or to `claim`, to make the hash check fail late).
 */
export function rebindBundle(trained: string, root: string, opts: { model?: string; sae?: string; claimModelSha?: string } = {}): string {
  const src = readBundle(trained);
  const out = join(root, `bundle-${n++}`);
  mkdirSync(out);
  const manifest = JSON.parse(readFileSync(join(trained, 'manifest.json'), 'utf8'));
  const head = JSON.parse(readFileSync(join(trained, manifest.head.path), 'utf8'));
  // every other file the manifest names (attribute heads, feature labels) travels unchanged
  for (const f of ['rule.json', 'attributes.json', 'features.json']) if (existsSync(join(trained, f))) copyFileSync(join(trained, f), join(out, f));
  const model = opts.model ?? src.modelDir;
  const sae = opts.sae ?? src.saePath;
  const modelSha = opts.claimModelSha ?? modelDigest(model);
  const saeSha = saeDigest(sae, manifest.layer).sha256;
  head.meta.trained_for = { ...head.meta.trained_for, model_sha256: modelSha, sae_sha256: saeSha };
  const headBytes = Buffer.from(JSON.stringify(head));
  writeFileSync(join(out, 'head.json'), headBytes);
  manifest.head = { path: 'head.json', sha256: createHash('sha256').update(headBytes).digest('hex') };
  manifest.model = { ...manifest.model, path: model, sha256: modelSha };
  manifest.sae = { ...manifest.sae, path: sae, sha256: saeSha, ...(sae.endsWith('.pt') && { format: 'qwen-scope' }) };
  manifest.version = `hostile-${n}`;
  writeFileSync(join(out, 'manifest.json'), JSON.stringify(manifest));
  return out;
}

/** A hostile Qwen-Scope file named for the bundle's layer, in a directory of its own. */
export function hostileSae(root: string, bytes: Buffer): string {
  const dir = join(root, `sae-${n++}`);
  mkdirSync(dir);
  const p = join(dir, 'layer2.sae.pt');
  writeFileSync(p, bytes);
  return p;
}

/** A copy of the golden checkpoint whose tensors pass through `edit` (raw little-endian bytes), plus extra shards. */
export function modelCopy(root: string, edit: (name: string, bytes: Buffer) => void = () => undefined): string {
  const dir = join(root, `model-${n++}`);
  mkdirSync(dir);
  copyFileSync(join(goldenCheckpointDir, 'config.json'), join(dir, 'config.json'));
  const st = SafetensorsFile.open(join(goldenCheckpointDir, 'model.safetensors'));
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, info] of st.tensors) {
    const bytes = st.readBytes(name);
    edit(name, bytes);
    tensors[name] = { dtype: info.dtype, shape: info.shape, data: bytes };
  }
  st.close();
  writeSafetensors(join(dir, 'model.safetensors'), tensors);
  return dir;
}

/** The golden checkpoint re-laid as two shards, the second holding one extra `mib` MiB tensor (sparse on disk). */
export function bigShardedModel(root: string, mib: number): string {
  const dir = modelCopy(root);
  rmSync(join(dir, 'model.safetensors'));
  copyFileSync(join(goldenCheckpointDir, 'model.safetensors'), join(dir, 'model-00001-of-00002.safetensors'));
  const header = Buffer.from(JSON.stringify({ 'padding.weight': { dtype: 'U8', shape: [mib * 2 ** 20], data_offsets: [0, mib * 2 ** 20] } }));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  const fd = openSync(join(dir, 'model-00002-of-00002.safetensors'), 'w');
  writeSync(fd, Buffer.concat([len, header]));
  writeSync(fd, Buffer.alloc(1), 0, 1, 8 + header.length + (mib * 2 ** 20) - 1); // a hole up to the last byte
  closeSync(fd);
  const st = SafetensorsFile.open(join(goldenCheckpointDir, 'model.safetensors'));
  const weightMap: Record<string, string> = { 'padding.weight': 'model-00002-of-00002.safetensors' };
  for (const name of st.tensors.keys()) weightMap[name] = 'model-00001-of-00002.safetensors';
  st.close();
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  return dir;
}
