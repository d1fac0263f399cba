/** Swapping in another bundle (POST /admin/reload): the old one serves until the new one is loaded and warm. */
import { randomUUID } from 'node:crypto';
import { isAbsolute, resolve } from 'node:path';
import { ToxScopeError } from '../errors.js';
import type { BundleInfo, ServiceDeps } from './deps.js';

export interface Reloaded {
  previous: BundleInfo | null;
  current: BundleInfo;
}

/**
 * `path` absent: the configured bundle. A bundle that fails validation is a 'validation' error; nothing changes.
 * The refusal's full text (absolute paths included) goes to the server log under a reference; the caller gets a
 * bounded message with paths relative to the bundle and nothing quoted from the files (see publicRefusal).
 */
export interface ReloadAudit {
  /** who asked (audit log); default 'admin' */
  actor?: string;
  reason?: string;
}

/**
 * Every reload, done or refused, is recorded in the audit log (admin_events) with its actor and reason. The record
 * is best effort: a reload still happens while the database is away (the bundle on disk is what decides), and the
 * missing record is logged.
 */
export async function reloadBundle(
  deps: Pick<ServiceDeps, 'host' | 'loadBundle' | 'log' | 'audit'> & { config?: Pick<ServiceDeps['config'], 'bundle'> },
  path: string | undefined,
  audit: ReloadAudit = {},
): Promise<Reloaded> {
  const load = deps.loadBundle;
  if (!load) throw new ToxScopeError('forbidden', 'reload is not available in this instance');
  const from = deps.host.peek()?.info.version ?? null;
  const record = async (outcome: 'ok' | 'refused', toVersion: string | null, detail: string | null) => {
    try {
      await deps.audit?.recordAdminEvent?.({ createdAt: new Date(), actor: audit.actor ?? 'admin', action: 'reload', reason: audit.reason ?? null, outcome, fromVersion: from, toVersion, detail });
    } catch (e) {
      deps.log?.warn('the reload could not be recorded in the audit log', { outcome, error: (e as Error)?.message ?? String(e) });
    }
  };
  try {
    const swapped = await deps.host.swap(() => load(path));
    deps.log?.info('bundle reloaded', { from: swapped.previous?.version, to: swapped.current.version, actor: audit.actor });
    await record('ok', swapped.current.version, path ?? null);
    return swapped;
  } catch (e) {
    if (e instanceof ToxScopeError && (e.kind === 'format' || e.kind === 'validation' || e.kind === 'not_found')) {
      const reference = randomUUID().slice(0, 8);
      deps.log?.warn('bundle refused: the previous bundle keeps serving', { reference, path: path ?? deps.config?.bundle ?? null, error: e.message });
      const bundleDir = path ?? deps.config?.bundle ?? undefined;
      const refusal = `bundle refused, the previous bundle keeps serving: ${publicRefusal(e.message, bundleDir)} (reference ${reference} in the server log)`;
      await record('refused', null, refusal);
      throw new ToxScopeError('validation', refusal, undefined, { cause: e });
    }
    throw e;
  }
}

/** Longest refusal text a caller gets (the server log keeps the whole of it). */
export const PUBLIC_REFUSAL_CHARS = 600;

/**
 * A refusal as the caller may see it: file paths inside the bundle relative to it, the bundle itself as
 * `<bundle>`, every other absolute path (the working directory, a model directory, a symlink's target) cut
 * to its last component; V8's JSON.parse messages, which quote the start of the file, without the quote;
 * control characters escaped; at most PUBLIC_REFUSAL_CHARS characters.
 */
export function publicRefusal(message: string, bundleDir?: string): string {
  let m = message.replace(/Unexpected token '[^']{0,8}', ".*?"(?:\.\.\.)? is not valid JSON/gs, 'an unexpected character');
  if (bundleDir) {
    const abs = resolve(bundleDir);
    m = m.split(`${abs}/`).join('').split(abs).join('<bundle>');
    if (!isAbsolute(bundleDir)) m = m.split(bundleDir).join('<bundle>');
  }
  m = m.split(`${process.cwd()}/`).join('');
  m = m.replace(/(^|[\s'"(\[,=])\/(?:[^\s'"()[\],:/]+\/)*([^\s'"()[\],:/]*)/g, (_all, lead: string, last: string) => `${lead}.../${last}`);
  m = m.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return m.length > PUBLIC_REFUSAL_CHARS ? `${m.slice(0, PUBLIC_REFUSAL_CHARS)}...` : m;
}
