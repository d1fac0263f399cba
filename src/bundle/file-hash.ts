/**
 * Content hashes of model and SAE files, for bundle provenance and for refusing a head trained on other weights.
 * Hashing a multi-GB checkpoint takes seconds, so results are memoised in a small JSON cache keyed by
 * (absolute path, size, mtime): a file that changes in place gets a new key.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { formatError } from '../errors.js';

export interface HashCache {
  get(key: string): string | undefined;
  set(key: string, sha256: string): void;
}

export function jsonHashCache(path: string): HashCache {
  let entries: Record<string, string> = {};
  try {
    if (existsSync(path)) entries = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    entries = {}; // a corrupt cache is only a cache: rebuild it
  }
  return {
    get: (k) => entries[k],
    set: (k, v) => {
      entries[k] = v;
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, JSON.stringify(entries, null, 1));
    },
  };
}

export function sha256File(path: string, cache?: HashCache): string {
  const abs = resolve(path);
  const st = statSync(abs);
  // a device or FIFO (a symlink to /dev/zero) would be hashed forever
  if (!st.isFile()) throw formatError(`${path}: not a regular file`);
  const key = `${abs}|${st.size}|${st.mtimeMs}`;
  const hit = cache?.get(key);
  if (hit) return hit;
  const h = createHash('sha256');
  const fd = openSync(abs, 'r');
  try {
    if (!fstatSync(fd).isFile()) throw formatError(`${path}: not a regular file`);
    const buf = Buffer.allocUnsafe(8 << 20);
    let pos = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      h.update(n === buf.length ? buf : buf.subarray(0, n));
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
  const digest = h.digest('hex');
  cache?.set(key, digest);
  return digest;
}

/** One digest over several files (sorted by name), e.g. all shards of a checkpoint plus its config. */
export function sha256Files(paths: string[], cache?: HashCache): string {
  const h = createHash('sha256');
  for (const p of [...paths].sort()) h.update(`${p.split('/').pop()}:${sha256File(p, cache)}\n`);
  return h.digest('hex');
}
