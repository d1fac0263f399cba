/**
 * /admin (bearer token, see adminAuth): thresholds, reload, audit, drift.
 *
 * PUT /admin/thresholds records every change (who, when, old, new, the bundle version) in the audit log
 * BEFORE applying it, all in one statement, then swaps the head in one assignment: requests already running
 * keep the old thresholds, every request after the answer sees the new ones. Changes are serialised. The
 * recorded changes are replayed onto the same bundle version after a restart or reload, and by the other
 * replicas (src/engine/threshold-sync.ts). GET says, per threshold, whether it is the bundle's or an override.
 */
import { Hono } from 'hono';
import { ToxScopeError } from '../../errors.js';
import { normalizeLanguageHint } from '../../engine/language.js';
import { thresholdSources } from '../../service/threshold-sync.js';
import type { NewThresholdChangeInput } from '../../db/repository.js';
import type { ServiceDeps } from '../../service/deps.js';
import { adminAuth, routeLabel } from '../middleware.js';
import { ReloadRequest, ThresholdsUpdate } from '../schemas.js';
import { readJson } from '../validate.js';

export function adminRoutes(deps: ServiceDeps): Hono {
  const app = new Hono();
  app.use('*', adminAuth({ token: deps.config.adminToken }));
  let thresholdLock: Promise<unknown> = Promise.resolve();

  const thresholdsOf = () => {
    const { classifier, info } = deps.host.current();
    const t = classifier.head.thresholds;
    const b = classifier.bundleHead.thresholds;
    return {
      bundle_version: info.version,
      pooled: t.pooled,
      per_language: { ...t.perLanguage },
      sources: thresholdSources(b, t),
      bundle: { pooled: b.pooled, per_language: { ...b.perLanguage } },
    };
  };

  app.get('/thresholds', routeLabel('/admin/thresholds'), (c) => c.json(thresholdsOf()));

  app.put('/thresholds', routeLabel('/admin/thresholds'), async (c) => {
    const body = await readJson(c, ThresholdsUpdate);
    const audit = deps.audit;
    if (!audit) throw new ToxScopeError('unavailable', 'threshold changes must be recorded in the audit log, and no database is configured');
    const changes: Record<string, number | null> = {};
    for (const [key, value] of Object.entries(body.thresholds)) changes[key === 'pooled' ? key : normalizeLanguageHint(key, `thresholds.${key}`)] = value;
    const actor = body.actor ?? c.req.header('x-toxscope-actor') ?? 'admin';

    const run = thresholdLock.then(async () => {
      const { classifier, info } = deps.host.current();
      const before = classifier.head;
      const after = before.withThresholds(changes); // validates before anything is recorded
      const at = new Date();
      const records: NewThresholdChangeInput[] = [];
      for (const [language, value] of Object.entries(changes)) {
        const old = language === 'pooled' ? before.thresholds.pooled : (before.thresholds.perLanguage[language] ?? null);
        const now = language === 'pooled' ? after.thresholds.pooled : (after.thresholds.perLanguage[language] ?? after.thresholds.pooled);
        if (value === null && old === null) continue;
        const reason = body.reason ?? (value === null ? 'removed: falls back to pooled' : null);
        records.push({ actor, language, oldThreshold: old, newThreshold: now, reason, at, bundleVersion: info.version, removed: value === null });
      }
      try {
        await audit.recordThresholdChanges(records);
      } catch (e) {
        throw new ToxScopeError('unavailable', 'the audit log (database) did not answer: the thresholds were not changed', {}, { cause: e });
      }
      // a threshold sync may have swapped the head while we wrote: apply the changes on top of what serves now
      const latest = classifier.head;
      classifier.setHead(latest === before ? after : latest.withThresholds(changes));
      deps.log?.info('thresholds changed', { actor, changes });
    });
    thresholdLock = run.catch(() => undefined);
    await run;
    return c.json(thresholdsOf());
  });

  app.post('/reload', routeLabel('/admin/reload'), async (c) => {
    const body = await readJson(c, ReloadRequest, { optional: true });
    const load = deps.loadBundle;
    if (!load) throw new ToxScopeError('forbidden', 'reload is not available in this instance');
    try {
      const { previous, current } = await deps.host.swap(() => load(body.path));
      deps.log?.info('bundle reloaded', { from: previous?.version, to: current.version });
      return c.json({ status: 'reloaded', previous_version: previous?.version ?? null, bundle_version: current.version });
    } catch (e) {
      if (e instanceof ToxScopeError && (e.kind === 'format' || e.kind === 'validation' || e.kind === 'not_found'))
        throw new ToxScopeError('validation', `bundle refused, the previous bundle keeps serving: ${e.message}`, e.details, { cause: e });
      throw e;
    }
  });

  app.get('/audit', routeLabel('/admin/audit'), async (c) => {
    if (!deps.audit) throw new ToxScopeError('unavailable', 'the audit log needs the database, and none is configured');
    const language = c.req.query('language');
    const limitText = c.req.query('limit') ?? '100';
    const limit = Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new ToxScopeError('validation', `limit must be an integer in [1, 10000], got '${limitText}'`);
    const rows = await deps.audit.listThresholdChanges({ language: language ? normalizeLanguageHint(language) : undefined, limit });
    return c.json({
      changes: rows.map((r) => ({
        at: r.createdAt.toISOString(),
        actor: r.actor,
        language: r.language,
        old: r.oldThreshold,
        new: r.newThreshold,
        reason: r.reason,
        bundle_version: r.bundleVersion, // null: recorded before versions were kept
        removed: r.removed,
      })),
    });
  });

  app.get('/drift', routeLabel('/admin/drift'), async (c) => {
    if (!deps.drift) throw new ToxScopeError('unavailable', 'drift needs the database, and none is configured');
    // predictions are stored under the primary subtag in lower case ('EN-GB' -> 'en'), as the classifier reads hints
    const language = c.req.query('language');
    return c.json(await deps.drift({ language: language ? normalizeLanguageHint(language) : undefined, window: c.req.query('window') }));
  });
  return app;
}
