/**
 * /admin/ui: the server-rendered admin page (see src/http/admin-ui/view.ts), behind the admin token.
 *
 * A browser cannot send the bearer header on navigation, so the token is given once on a login form and
 * kept in an HttpOnly, SameSite=Strict cookie scoped to this path; it is compared in constant time like the
 * header (which is accepted too). POSTs also refuse a foreign Origin.
 *
 * One attribute at a time (`?attribute=`, default toxicity; a selector on the page): its statistics, drift windows and
 * thresholds. Applying a threshold does not touch the head here: it is forwarded as PUT /admin/thresholds through the
 * app itself (`forward`), so the audit log, validation and serialisation are those of the API.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { z } from 'zod';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { parseWindow } from '../../drift/f1.js';
import { ToxScopeError } from '../../errors.js';
import { normalizeLanguageHint } from '../../engine/language.js';
import { TOXICITY } from '../../head/attributes.js';
import type { ServiceDeps } from '../../service/deps.js';
import { validForm } from '../validate.js';
import { DEFAULT_MIN_VOLUME, HISTOGRAM_BINS, languagesOf, renderDashboard, renderLogin, UI_BASE, type AuditRow, type PageData } from '../admin-ui/view.js';

export const ADMIN_COOKIE = 'toxscope_admin';

/** The page's forms (urlencoded or multipart; a malformed body is a 400 before these run). Fields it does not know are ignored. */
const LoginForm = z.object({ token: z.string().optional() }).loose();
const ThresholdForm = z.object({ language: z.string().optional(), threshold: z.string().optional(), revert: z.string().optional(), reason: z.string().optional(), window: z.string().optional(), attribute: z.string().optional() }).loose();
const ReloadForm = z.object({ path: z.string().optional(), reason: z.string().optional(), window: z.string().optional() }).loose();
const COOKIE_MAX_AGE_S = 8 * 3600;
const DEFAULT_WINDOW = '7d';

/** Sends a request through the whole app (the composition's app.fetch). */
export type Forward = (request: Request) => Response | Promise<Response>;

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

export function adminUiRoutes(deps: ServiceDeps, forward: Forward): Hono {
  const app = new Hono();
  const expected = deps.config.adminToken === null ? null : sha256(deps.config.adminToken);
  const matches = (token: string | undefined) => token !== undefined && expected !== null && timingSafeEqual(sha256(token), expected);

  /** The token of this request (cookie or bearer header) when it is the right one. */
  const tokenOf = (c: Context): string | null => {
    const cookie = getCookie(c, ADMIN_COOKIE);
    if (matches(cookie)) return cookie!;
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header('authorization') ?? '')?.[1];
    return matches(bearer) ? bearer! : null;
  };

  const html = (c: Context, body: string, status: 200 | 401 | 403 | 422 | 503 = 200) => {
    c.header('Cache-Control', 'no-store');
    c.header('X-Frame-Options', 'DENY');
    c.header('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    return c.html(body, status);
  };

  app.use('*', async function adminUiEnabled(c, next) {
    if (expected === null) return html(c, renderLogin('The admin page is disabled: no admin token is configured (set TOXSCOPE_ADMIN_TOKEN).'), 403);
    if (c.req.method === 'POST' && !sameOrigin(c)) throw new ToxScopeError('forbidden', 'admin page: cross-origin form posts are refused');
    await next();
  });

  app.get('/login', (c) => html(c, renderLogin()));

  app.post('/login', validForm(LoginForm), async (c) => {
    const token = c.req.valid('form').token?.trim();
    if (!matches(token)) return html(c, renderLogin('That is not the admin token.'), 401);
    setCookie(c, ADMIN_COOKIE, token!, { httpOnly: true, sameSite: 'Strict', secure: isHttps(c), path: UI_BASE, maxAge: COOKIE_MAX_AGE_S });
    return c.redirect(UI_BASE, 303);
  });

  app.post('/logout', (c) => {
    deleteCookie(c, ADMIN_COOKIE, { path: UI_BASE, secure: isHttps(c) });
    return c.redirect(`${UI_BASE}/login`, 303);
  });

  /** The page; `given` replaces the query (the answer to a failed POST). */
  const dashboard = async (c: Context, given?: { lang: string; window: string; error: string; status: 422 | 503; attribute?: string }) => {
    if (!tokenOf(c)) return c.redirect(`${UI_BASE}/login`, 303);
    const q = (name: string): string | undefined => (given ? (given as Record<string, string | number>)[name]?.toString() : c.req.query(name));
    let notice: PageData['notice'] = given ? { kind: 'error', text: given.error } : undefined;
    let window = q('window') || DEFAULT_WINDOW;
    let windowMs: number;
    try {
      windowMs = parseWindow(window);
    } catch (e) {
      notice = { kind: 'error', text: (e as Error).message };
      window = DEFAULT_WINDOW;
      windowMs = parseWindow(window);
    }
    let preview: number | null = null;
    const previewText = q('preview');
    if (previewText !== undefined && previewText !== '') {
      const v = Number(previewText);
      if (Number.isFinite(v) && v >= 0 && v <= 1) preview = v;
      else notice = { kind: 'error', text: `preview threshold must be a number in [0, 1], got '${previewText}'` };
    }

    const end = new Date();
    const start = new Date(end.getTime() - windowMs);
    const loaded = deps.host.peek();
    // the attribute shown: one the bundle scores (an unknown one says so and shows toxicity)
    const attributes = loaded?.classifier.attributeNames ?? [TOXICITY];
    let attribute = q('attribute') || TOXICITY;
    if (!attributes.includes(attribute)) {
      notice = { kind: 'error', text: `'${attribute.slice(0, 80)}' is not an attribute of this bundle (it scores ${attributes.join(', ')}): showing ${TOXICITY}` };
      attribute = TOXICITY;
    }
    const serving = loaded?.classifier.attributeHead(attribute);
    const shipped = loaded?.classifier.bundleAttributeHead(attribute);
    const thresholds =
      loaded && serving && shipped
        ? {
            bundleVersion: loaded.info.version,
            ...(loaded.info.syntheticBackbone && { syntheticNotice: loaded.info.notice ?? 'Synthetic backbone: scores measure the pipeline, not Qwen3 features.' }),
            pooled: serving.thresholds.pooled,
            perLanguage: { ...serving.thresholds.perLanguage },
            bundlePooled: shipped.thresholds.pooled,
            bundlePerLanguage: { ...shipped.thresholds.perLanguage },
          }
        : null;
    const minText = q('min');
    const minVolume = minText !== undefined && /^\d{1,7}$/.test(minText) ? Number(minText) : DEFAULT_MIN_VOLUME;
    const review = deps.review;
    const [labeled, bins, history] = review
      ? await Promise.all([review.labeledScores(start, end, { attribute }), review.scoreBins(start, end, HISTOGRAM_BINS, { attribute }), review.f1WindowHistory(start, { attribute })]).catch((e) => {
          throw new ToxScopeError('unavailable', 'the admin page needs the database, which did not answer', {}, { cause: e });
        })
      : [null, [], []];
    const audit = await auditRows(deps).catch(() => null);
    const data: PageData = { attribute, attributes: loaded ? attributes : [], window, windowStart: start, windowEnd: end, thresholds, labeled, bins, history, selected: null, preview, notice, drift: { tolerance: deps.config.drift.tolerance, minLabeled: deps.config.drift.minLabeled }, minVolume, audit };
    const requested = q('lang');
    data.selected = requested ? safeLanguage(requested) : (languagesOf(data)[0] ?? null);
    if (data.selected === null && requested) data.notice = { kind: 'error', text: `'${requested}' is not a language code` };
    if (data.selected !== null && thresholds && q('applied') !== undefined && !notice) {
      const now = thresholds.perLanguage[data.selected] ?? thresholds.pooled;
      const how = q('applied') === 'revert' ? "reverted to the bundle's threshold: " : '';
      data.notice = { kind: 'ok', text: `The ${attribute === TOXICITY ? '' : `${attribute} `}threshold for ${data.selected} is now ${how}${now} (recorded in the audit log).` };
    }
    if (q('reloaded') !== undefined && !notice) data.notice = { kind: 'ok', text: `Reloaded: bundle ${q('reloaded')} is serving (recorded in the audit log).` };
    return html(c, renderDashboard(data), given?.status ?? 200);
  };
  app.get('/', (c) => dashboard(c));

  app.post('/thresholds', validForm(ThresholdForm), async (c) => {
    const token = tokenOf(c);
    if (!token) return c.redirect(`${UI_BASE}/login`, 303);
    const form = c.req.valid('form');
    const field = (name: 'language' | 'threshold' | 'revert' | 'reason' | 'window' | 'attribute') => form[name]?.trim() ?? '';
    const language = normalizeLanguageHint(field('language'), 'language');
    const attribute = field('attribute') || TOXICITY;
    const revert = field('revert') === '1';
    const threshold = Number(field('threshold'));
    if (!revert && (field('threshold') === '' || !Number.isFinite(threshold))) throw new ToxScopeError('validation', `threshold must be a number, got '${field('threshold')}'`);
    const body = { thresholds: { [language]: revert ? 'bundle' : threshold }, attribute, actor: 'admin-ui', ...(field('reason') && { reason: field('reason') }) };
    const answer = await forward(
      new Request(new URL('/admin/thresholds', c.req.url), {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-request-id': c.get('requestId') ?? '' },
        body: JSON.stringify(body),
      }),
    );
    const window = field('window') || DEFAULT_WINDOW;
    const shown: Record<string, string> = attribute === TOXICITY ? {} : { attribute };
    if (answer.ok) return c.redirect(`${UI_BASE}?${new URLSearchParams({ lang: language, window, ...shown, applied: revert ? 'revert' : '1' })}`, 303);
    const error = (await answer.json().catch(() => null)) as { error?: { message?: string } } | null;
    const text = `The threshold was not changed (${answer.status}): ${error?.error?.message ?? answer.statusText}`;
    return dashboard(c, { lang: language, window, error: text, status: answer.status >= 500 ? 503 : 422, ...shown });
  });
  app.post('/reload', validForm(ReloadForm), async (c) => {
    const token = tokenOf(c);
    if (!token) return c.redirect(`${UI_BASE}/login`, 303);
    const form = c.req.valid('form');
    const field = (name: 'path' | 'reason' | 'window') => form[name]?.trim() ?? '';
    const body = { actor: 'admin-ui', ...(field('path') && { path: field('path') }), ...(field('reason') && { reason: field('reason') }) };
    const answer = await forward(
      new Request(new URL('/admin/reload', c.req.url), {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-request-id': c.get('requestId') ?? '' },
        body: JSON.stringify(body),
      }),
    );
    const window = field('window') || DEFAULT_WINDOW;
    const result = (await answer.json().catch(() => null)) as { bundle_version?: string; error?: { message?: string } } | null;
    if (answer.ok) return c.redirect(`${UI_BASE}?${new URLSearchParams({ window, reloaded: result?.bundle_version ?? '' })}`, 303);
    const text = `The bundle was not reloaded (${answer.status}): ${result?.error?.message ?? answer.statusText}`;
    return dashboard(c, { lang: '', window, error: text, status: answer.status >= 500 ? 503 : 422 });
  });
  return app;
}

/** The newest threshold changes and reloads, newest first. */
async function auditRows(deps: ServiceDeps, limit = 20): Promise<AuditRow[] | null> {
  if (!deps.audit) return null;
  const [changes, events] = await Promise.all([deps.audit.listThresholdChanges({ limit }), deps.audit.listAdminEvents?.({ limit }) ?? []]);
  const fmt = (v: number | null) => (v === null ? 'none' : String(Number(v.toFixed(4))));
  const rows: AuditRow[] = [
    ...changes.map((r) => ({
      at: r.createdAt,
      actor: r.actor,
      what: `${r.attribute === TOXICITY ? '' : `${r.attribute} `}threshold ${r.language}: ${fmt(r.oldThreshold)} → ${r.removed ? `removed (pooled ${fmt(r.newThreshold)})` : fmt(r.newThreshold)}${r.bundleVersion ? ` (bundle ${r.bundleVersion})` : ''}`,
      reason: r.reason,
    })),
    ...events.map((e) => ({
      at: e.createdAt,
      actor: e.actor,
      what: e.outcome === 'ok' ? `reload: ${e.fromVersion ?? 'none'} → ${e.toVersion}` : `reload refused (${e.fromVersion ?? 'none'} kept serving): ${e.detail ?? ''}`,
      reason: e.reason,
      refused: e.outcome === 'refused',
    })),
  ];
  return rows.sort((a, b) => b.at.getTime() - a.at.getTime()).slice(0, limit);
}

function safeLanguage(value: string): string | null {
  try {
    return normalizeLanguageHint(value);
  } catch {
    return value === 'und' ? value : null;
  }
}

function isHttps(c: Context): boolean {
  return new URL(c.req.url).protocol === 'https:' || c.req.header('x-forwarded-proto') === 'https';
}

/** No Origin (same-origin navigation by older browsers, curl) or one naming this host. */
function sameOrigin(c: Context): boolean {
  const origin = c.req.header('origin');
  if (origin === undefined) return true;
  if (origin === 'null') return false;
  try {
    const host = c.req.header('x-forwarded-host') ?? c.req.header('host') ?? new URL(c.req.url).host;
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}
