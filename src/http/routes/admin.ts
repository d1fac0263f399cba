/**
 * /admin (bearer token, see adminAuth): thresholds, reload, audit, drift. Thresholds, prevalence, audit and drift
 * take an attribute (query `?attribute=` or body `attribute`; default toxicity).
 *
 * PUT /admin/thresholds: recorded in the audit log before it applies (src/service/thresholds.ts). GET says,
 * per threshold, whether it is the bundle's or an override.
 */
import { Hono } from 'hono';
import { ToxScopeError, validationError } from '../../errors.js';
import { TOXICITY } from '../../head/attributes.js';
import { normalizeLanguageHint } from '../../engine/language.js';
import type { ServiceDeps } from '../../service/deps.js';
import { reloadBundle } from '../../service/reload.js';
import { changeThresholds, thresholdsView } from '../../service/thresholds.js';
import { adminAuth } from '../middleware.js';
import { AttributeName, PrevalenceUpdate, ReloadRequest, ThresholdsUpdate } from '../schemas.js';
import { changePrevalence, prevalenceView } from '../../service/prevalence.js';
import { jsonBody, valid } from '../validate.js';

/** ?attribute= of the admin reads: absent or empty = toxicity; a malformed name is a 422 naming the field. */
function attributeQuery(value: string | undefined): string {
  if (value === undefined || value === '') return TOXICITY;
  const parsed = AttributeName.safeParse(value);
  if (!parsed.success) throw validationError(`attribute: ${parsed.error.issues[0].message}; got '${value.slice(0, 80)}'`, { field: 'attribute' });
  return parsed.data;
}

export function adminRoutes(deps: ServiceDeps): Hono {
  const app = new Hono();
  app.use('*', adminAuth({ token: deps.config.adminToken }));

  // ?attribute= (default toxicity): every attribute of the bundle has its own thresholds
  app.get('/thresholds', (c) => c.json(thresholdsView(deps.host, attributeQuery(c.req.query('attribute')))));

  app.put('/thresholds', jsonBody(), valid(ThresholdsUpdate), async (c) => {
    const body = c.req.valid('json');
    const changes: Record<string, number | null | 'bundle'> = {};
    for (const [key, value] of Object.entries(body.thresholds)) changes[key === 'pooled' ? key : normalizeLanguageHint(key, `thresholds.${key}`)] = value;
    const actor = body.actor ?? c.req.header('x-toxscope-actor') ?? 'admin';
    return c.json(await changeThresholds(deps, { changes, actor, reason: body.reason, attribute: body.attribute }));
  });

  app.get('/prevalence', async (c) => c.json(await prevalenceView(deps, attributeQuery(c.req.query('attribute')))));

  app.put('/prevalence', jsonBody(), valid(PrevalenceUpdate), async (c) => {
    const body = c.req.valid('json');
    const changes: Record<string, number | null> = {};
    for (const [key, value] of Object.entries(body.prevalence)) changes[key === 'pooled' ? key : normalizeLanguageHint(key, `prevalence.${key}`)] = value;
    const actor = body.actor ?? c.req.header('x-toxscope-actor') ?? 'admin';
    return c.json(await changePrevalence(deps, { changes, actor, reason: body.reason, attribute: body.attribute }));
  });

  app.post('/reload', jsonBody({ optional: true }), valid(ReloadRequest), async (c) => {
    const body = c.req.valid('json');
    const actor = body.actor ?? c.req.header('x-toxscope-actor') ?? 'admin';
    const { previous, current } = await reloadBundle(deps, body.path, { actor, reason: body.reason });
    return c.json({ status: 'reloaded', previous_version: previous?.version ?? null, bundle_version: current.version });
  });

  app.get('/audit', async (c) => {
    if (!deps.audit) throw new ToxScopeError('unavailable', 'the audit log needs the database, and none is configured');
    const language = c.req.query('language');
    const limitText = c.req.query('limit') ?? '100';
    const limit = Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new ToxScopeError('validation', `limit must be an integer in [1, 10000], got '${limitText}'`);
    const attribute = c.req.query('attribute') ? attributeQuery(c.req.query('attribute')) : undefined;
    const rows = await deps.audit.listThresholdChanges({ language: language ? normalizeLanguageHint(language) : undefined, attribute, limit });
    const events = (await deps.audit.listAdminEvents?.({ limit })) ?? [];
    return c.json({
      reloads: events.map((e) => ({ at: e.createdAt.toISOString(), actor: e.actor, reason: e.reason, outcome: e.outcome, from_version: e.fromVersion, to_version: e.toVersion, detail: e.detail })),
      changes: rows.map((r) => ({
        at: r.createdAt.toISOString(),
        actor: r.actor,
        attribute: r.attribute,
        language: r.language,
        old: r.oldThreshold,
        new: r.newThreshold,
        reason: r.reason,
        bundle_version: r.bundleVersion, // null: recorded before versions were kept
        removed: r.removed,
      })),
    });
  });

  app.get('/drift', async (c) => {
    if (!deps.drift) throw new ToxScopeError('unavailable', 'drift needs the database, and none is configured');
    // predictions are stored under the primary subtag in lower case ('EN-GB' -> 'en'), as the classifier reads hints
    const language = c.req.query('language');
    const attribute = attributeQuery(c.req.query('attribute'));
    const known = deps.host.current().classifier.attributeNames;
    if (!known.includes(attribute)) throw validationError(`attribute: unknown attribute '${attribute}': this bundle scores ${known.join(', ')}`, { field: 'attribute', value: attribute });
    return c.json({ attribute, ...(await deps.drift({ language: language ? normalizeLanguageHint(language) : undefined, window: c.req.query('window'), attribute })) });
  });
  return app;
}
