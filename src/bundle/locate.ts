/**
 * Finding a bundle's model and SAE by content hash: a bundle names each by its sha256 and a location, and the
 * location is only a hint. Candidates, in order (the first whose content hash matches wins):
 *
 *   1. the manifest's path, resolved against the bundle directory (relative paths travel with the bundle)
 *   2. inside the bundle: <bundle>/model, <bundle>/sae/<tail>, <bundle>/<tail>
 *   3. each model search directory (TOXSCOPE_MODEL_DIR, in order): <dir>/<tail>, <dir>/<basename>
 *
 * <tail> is the last path component of a model directory ("Qwen3-1.7B") and the last two of an SAE file
 * ("<release>/layer14.sae.pt", a Qwen-Scope release holds one file per layer). A candidate that exists but
 * hashes differently is never used; when nothing matches, the error says what was expected (sha256) and
 * every path tried with what was found there.
 */
import { existsSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { formatError } from '../errors.js';

export interface Locatable {
  what: 'model' | 'SAE';
  /** the manifest's path: relative to the bundle directory, or absolute */
  path: string;
  sha256: string;
  /** the SAE's path is a file inside a release directory: search by its last two components */
  tailComponents: 1 | 2;
}

export interface LocateOptions {
  bundleDir: string;
  searchDirs: readonly string[];
  /** content digest of a candidate (throws when it is not a readable artifact of this kind) */
  digest: (path: string) => string;
}

export interface Located {
  path: string;
  /** every candidate looked at before the match, with why it was passed over */
  tried: string[];
}

export function locateArtifact(a: Locatable, o: LocateOptions): Located {
  const tried: string[] = [];
  for (const candidate of candidates(a, o)) {
    if (!existsSync(candidate)) {
      tried.push(`${candidate} (missing)`);
      continue;
    }
    let sha: string;
    try {
      sha = o.digest(candidate);
    } catch (e) {
      tried.push(`${candidate} (unreadable: ${(e as Error).message})`);
      continue;
    }
    if (sha === a.sha256) return { path: candidate, tried };
    tried.push(`${candidate} (a different ${a.what}: sha256 ${short(sha)})`);
  }
  const hint = o.searchDirs.length === 0 ? `; set TOXSCOPE_MODEL_DIR to directories holding "${tail(a)}"` : '';
  const other = tried.some((t) => t.includes(`(a different ${a.what}`)) ? ` (a head only runs on the ${a.what} it was trained on: retrain the head for this ${a.what})` : '';
  throw formatError(
    `${o.bundleDir}: the bundle's ${a.what} was not found: expected sha256 ${a.sha256} ("${a.path}" in the manifest); tried ${tried.join(', ')}${hint}${other}`,
    { expected_sha256: a.sha256, tried },
  );
}

function candidates(a: Locatable, o: LocateOptions): string[] {
  const t = tail(a);
  const base = basename(a.path);
  const list = [
    isAbsolute(a.path) ? a.path : join(o.bundleDir, a.path),
    ...(a.what === 'model' ? [join(o.bundleDir, 'model')] : [join(o.bundleDir, 'sae', t), join(o.bundleDir, 'sae', base)]),
    join(o.bundleDir, t),
    ...o.searchDirs.flatMap((d) => [join(d, t), join(d, base)]),
  ];
  return [...new Set(list.map((p) => resolve(p)))];
}

/** "Qwen3-1.7B" for a model directory; "<release>/layer14.sae.pt" for an SAE file. */
function tail(a: Locatable): string {
  const p = a.path.replace(/[\\/]+$/, '');
  if (a.tailComponents === 1) return basename(p);
  const parent = basename(dirname(p));
  return parent && parent !== '.' && parent !== '..' ? `${parent}${sep}${basename(p)}` : basename(p);
}

const short = (sha: string) => sha.slice(0, 12);
