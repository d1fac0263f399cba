/** Swapping in another bundle (POST /admin/reload): the old one serves until the new one is loaded and warm. */
import { ToxScopeError } from '../errors.js';
import type { BundleInfo, ServiceDeps } from './deps.js';

export interface Reloaded {
  previous: BundleInfo | null;
  current: BundleInfo;
}

/** `path` absent: the configured bundle. A bundle that fails validation is a 'validation' error; nothing changes. */
export async function reloadBundle(deps: Pick<ServiceDeps, 'host' | 'loadBundle' | 'log'>, path: string | undefined): Promise<Reloaded> {
  const load = deps.loadBundle;
  if (!load) throw new ToxScopeError('forbidden', 'reload is not available in this instance');
  try {
    const swapped = await deps.host.swap(() => load(path));
    deps.log?.info('bundle reloaded', { from: swapped.previous?.version, to: swapped.current.version });
    return swapped;
  } catch (e) {
    if (e instanceof ToxScopeError && (e.kind === 'format' || e.kind === 'validation' || e.kind === 'not_found'))
      throw new ToxScopeError('validation', `bundle refused, the previous bundle keeps serving: ${e.message}`, e.details, { cause: e });
    throw e;
  }
}
