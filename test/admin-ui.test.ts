/**
 * The admin page in headless Chromium (Debian's /usr/bin/chromium through playwright-core), against a real
 * service on a loopback port: log in with the token, see the charts of a language with feedback, preview a
 * threshold, apply it, and find it in GET /admin/thresholds; see drift alarms, low-volume languages folded into
 * "other", the audit log, revert a language to the bundle's threshold, reload the bundle, and use the page at
 * phone width; pick an attribute (insult) and see and change its own statistics, drift and thresholds.
 * Screenshots: .test-output/admin-ui-*.png (desktop and phone).
 * Skipped where /usr/bin/chromium is absent (`apt-get install chromium`).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDriftMonitor } from '../src/drift/monitor.js';
import { adminUiFixture, type AdminUiFixture } from './admin-ui-fixture.js';
import { ADMIN_TOKEN } from './helpers/app.js';

const CHROMIUM = '/usr/bin/chromium';
const OUT = resolve(import.meta.dirname, '..', '.test-output');
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

describe.skipIf(!existsSync(CHROMIUM))('admin page in headless Chromium', () => {
  let f: AdminUiFixture;
  let server: ServerType;
  let base: string;
  let profile: string;
  let browser: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    f = await adminUiFixture();
    server = serve({ fetch: f.t.app.fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise<void>((r) => server.once('listening', () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    profile = mkdtempSync(join(tmpdir(), 'toxscope-chromium-'));
    // launchPersistentContext: playwright's way to give Chromium a --user-data-dir (a new, empty one here)
    browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1280, height: 1000 } });
    page = browser.pages()[0] ?? (await browser.newPage());
    page.setDefaultTimeout(15_000);
    mkdirSync(OUT, { recursive: true });
  });
  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    await f?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  const apiThresholds = async () => (await fetch(`${base}/admin/thresholds`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json() as Promise<{ pooled: number; per_language: Record<string, number> }>;

  it('asks for the token, then shows the charts of a language with feedback', async () => {
    await page.goto(`${base}/admin/ui`);
    expect(new URL(page.url()).pathname).toBe('/admin/ui/login');
    await page.fill('input[name="token"]', 'wrong-token-0123456789');
    await page.click('button[type="submit"]');
    expect(await page.locator('[role="alert"]').textContent()).toContain('not the admin token');

    await page.fill('input[name="token"]', ADMIN_TOKEN);
    await page.click('button[type="submit"]');
    expect(new URL(page.url()).pathname).toBe('/admin/ui');
    const cookies = await browser.cookies(`${base}/admin/ui`);
    expect(cookies.find((c) => c.name === 'toxscope_admin')).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/admin/ui' });

    await page.click('tr[data-language="en"] a');
    const histogram = page.locator('svg[data-chart="histogram"][data-language="en"]');
    await histogram.waitFor();
    const en = f.predictions.filter((p) => p.lang === 'en');
    expect(await histogram.getAttribute('data-labeled')).toBe(String(en.length));
    expect(await histogram.locator('rect.bar.toxic').count()).toBeGreaterThan(0);
    expect(await histogram.locator('rect.bar.clean').count()).toBeGreaterThan(0);
    const box = await histogram.boundingBox();
    expect(box!.width).toBeGreaterThan(300); // rendered, not just present in the DOM
    const curve = page.locator('svg[data-chart="threshold-curve"][data-language="en"]');
    expect(await curve.locator('g.series').count()).toBe(3);
    expect(await page.locator('svg[data-chart="drift"][data-language="en"] g.series.f1').getAttribute('data-points')).toBe('3');
  });

  it('previews a threshold, applies it, and GET /admin/thresholds returns it', async () => {
    const before = await apiThresholds();
    const current = before.per_language.en ?? before.pooled;
    const en = f.predictions.filter((p) => p.lang === 'en');
    const scores = en.map((p) => p.score).sort((a, b) => a - b);
    const proposed = Number(scores[Math.floor(scores.length / 3)].toFixed(3));
    expect(proposed).not.toBe(current);
    const flips = en.filter((p) => p.score >= current !== p.score >= proposed).length;

    await page.fill('input[name="preview"]', String(proposed));
    await page.click('button[value="preview"]');
    const preview = page.locator('table.preview');
    await preview.waitFor();
    expect(await preview.getAttribute('data-flips')).toBe(String(flips));
    expect(await page.locator('svg[data-chart="histogram"][data-language="en"] g.marker.preview').getAttribute('data-x')).toBe(String(proposed));
    await page.screenshot({ path: join(OUT, 'admin-ui-preview.png'), fullPage: true });
    expect((await apiThresholds()).per_language.en).toBe(before.per_language.en); // a preview changes nothing

    await page.fill('input[name="reason"]', 'browser test');
    await page.click('button.apply');
    await page.locator('.notice.ok').waitFor();
    expect(await page.locator('.notice.ok').textContent()).toContain(`The threshold for en is now ${proposed}`);
    expect((await apiThresholds()).per_language.en).toBe(proposed);
    await page.screenshot({ path: join(OUT, 'admin-ui-applied.png'), fullPage: true });
    expect(existsSync(join(OUT, 'admin-ui-applied.png'))).toBe(true);
  });

  it('shows drift alarms per language and folds low-volume languages into "other"', async () => {
    // a few predictions in languages far below the minimum volume
    const res = await fetch(`${base}/v1/classify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ texts: ['bonjour à tous', 'merci beaucoup', 'hola amigos'], language: ['fr', 'fr', 'es'] }) });
    expect(res.status).toBe(200);
    await f.t.deps.predictions!.flush!();
    await page.goto(`${base}/admin/ui?lang=en`);
    // the alarm rule of the service (tolerance 0.05, at least 10 labeled): computed here from the stored windows
    const windows = await f.repo.latestF1Windows();
    const alarming = windows.filter((w) => w.drift !== null && Math.abs(w.drift) > 0.05 && w.n >= 10).map((w) => w.language).sort();
    expect(alarming.length).toBeGreaterThan(0); // the fixture's tiny head drifts from its baselines
    const banner = page.locator('.notice.alarms');
    expect((await banner.getAttribute('data-alarms'))!.split(',').sort()).toEqual(alarming);
    for (const language of ['en', 'de']) {
      expect(await page.locator(`tr[data-language="${language}"] .alarm`).count()).toBe(alarming.includes(language) ? 1 : 0);
    }
    const other = page.locator('tr[data-language="other"]');
    expect(await other.locator('summary').textContent()).toBe('other (2)');
    expect(await other.locator('td').nth(1).textContent()).toBe('3');
    expect(await page.locator('tr[data-language="fr"]').count()).toBe(0);
    await page.screenshot({ path: join(OUT, 'admin-ui-alarms.png'), fullPage: true });
  });

  it("reverts a language to the bundle's threshold (not a removal), recorded with actor and reason", async () => {
    const before = (await (await fetch(`${base}/admin/thresholds`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { per_language: Record<string, number>; bundle: { per_language: Record<string, number>; pooled: number } };
    const trained = before.bundle.per_language.en ?? before.bundle.pooled;
    expect(before.per_language.en).not.toBe(trained); // the apply test moved it
    await page.goto(`${base}/admin/ui?lang=en`);
    await page.fill('form.revert input[name="reason"]', 'back to the trained value');
    await page.click('button.revert');
    await page.locator('.notice.ok').waitFor();
    expect(await page.locator('.notice.ok').textContent()).toContain("reverted to the bundle's threshold");
    const after = (await apiThresholds()) as { pooled: number; per_language: Record<string, number> };
    expect(after.per_language.en ?? after.pooled).toBe(trained);
    expect(Object.hasOwn(after.per_language, 'en')).toBe(Object.hasOwn(before.bundle.per_language, 'en'));
    const audit = page.locator('table.audit tbody tr').first();
    expect(await audit.textContent()).toContain('threshold en');
    expect(await audit.textContent()).toContain('back to the trained value');
    expect(await audit.textContent()).toContain('admin-ui');
  });

  it('reloads the bundle from the page; a refused reload keeps the bundle; both are in the audit log', async () => {
    await page.goto(`${base}/admin/ui`);
    await page.fill('section.reload input[name="path"]', join(f.t.dir, 'no-such-bundle'));
    await page.fill('section.reload input[name="reason"]', 'try a missing bundle');
    await page.click('button.reload');
    const refusal = page.locator('.notice.error[role="status"]');
    await refusal.waitFor();
    expect(await refusal.textContent()).toContain('The bundle was not reloaded');
    await page.goto(`${base}/admin/ui`);
    await page.fill('section.reload input[name="reason"]', 'routine reload');
    await page.click('button.reload');
    await page.locator('.notice.ok').waitFor();
    expect(await page.locator('.notice.ok').textContent()).toContain('Reloaded: bundle');
    const rows = page.locator('table.audit tbody tr');
    expect(await rows.nth(0).textContent()).toMatch(/reload: tiny-v1 → tiny-v1.*routine reload/);
    expect(await rows.nth(1).getAttribute('class')).toBe('refused');
    expect(await rows.nth(1).textContent()).toContain('try a missing bundle');
    const api = (await (await fetch(`${base}/admin/audit`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { reloads: { actor: string; outcome: string; reason: string }[] };
    expect(api.reloads.slice(0, 2)).toMatchObject([
      { actor: 'admin-ui', outcome: 'ok', reason: 'routine reload' },
      { actor: 'admin-ui', outcome: 'refused', reason: 'try a missing bundle' },
    ]);
    await page.screenshot({ path: join(OUT, 'admin-ui-audit.png'), fullPage: true });
  });

  it("picks an attribute: its statistics, drift windows and thresholds; an insult threshold applied there leaves toxicity's", async () => {
    // moderators label insult for the German posts (here: their toxicity label), then the monitor stores insult's window
    const de = f.predictions.filter((p) => p.lang === 'de');
    const fb = await fetch(`${base}/v1/feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ items: de.map((p) => ({ id: p.id, label: p.label, attribute: 'insult' })) }) });
    expect(fb.status).toBe(202);
    await f.t.deps.predictions!.flush!();
    await createDriftMonitor({ repo: f.repo, baselines: { en: 0.8, de: 0.7 }, attributes: { insult: { de: 0.6 } }, windowMs: 3_600_000, now: () => new Date(Date.now() + 120_000) }).runOnce();

    await page.goto(`${base}/admin/ui?lang=de`);
    expect(await page.locator('select[name="attribute"] option').allTextContents()).toEqual(['toxicity', 'identity_attack', 'insult']);
    expect(await page.locator('.current-attribute').textContent()).toBe('toxicity');
    await page.selectOption('select[name="attribute"]', 'insult');
    await page.click('button.show-attribute');
    await page.waitForURL(/attribute=insult/);
    expect(await page.locator('.current-attribute').textContent()).toBe('insult');
    expect(await page.locator('select[name="attribute"]').inputValue()).toBe('insult');
    const histogram = page.locator('section.language[data-attribute="insult"] svg[data-chart="histogram"][data-language="de"]');
    await histogram.waitFor();
    expect(await histogram.getAttribute('data-labeled')).toBe(String(de.length)); // insult labels, not toxicity's
    expect(await page.locator('svg[data-chart="drift"][data-language="de"] g.series.f1').getAttribute('data-points')).toBe('1'); // insult's one window
    expect(await page.locator('section.control h2').textContent()).toContain('insult threshold for de');
    // links keep the attribute
    expect(await page.locator('tr[data-language="de"] a').getAttribute('href')).toContain('attribute=insult');

    const thresholds = async (attribute: string) => (await (await fetch(`${base}/admin/thresholds?attribute=${attribute}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { pooled: number; per_language: Record<string, number> };
    const toxicityBefore = await thresholds('toxicity');
    const insultBefore = await thresholds('insult');
    const proposed = Number(((insultBefore.per_language.de ?? insultBefore.pooled) > 0.5 ? 0.123 : 0.877).toFixed(3));
    await page.fill('section.control input[name="preview"]', String(proposed));
    await page.click('button[value="preview"]');
    await page.locator('table.preview').waitFor();
    await page.fill('form:has(button.apply) input[name="reason"]', 'insult in de, from the page');
    await page.click('button.apply');
    await page.locator('.notice.ok').waitFor();
    expect(await page.locator('.notice.ok').textContent()).toContain(`The insult threshold for de is now ${proposed}`);
    expect(new URL(page.url()).searchParams.get('attribute')).toBe('insult'); // the page stays on insult
    expect((await thresholds('insult')).per_language.de).toBe(proposed);
    expect(await thresholds('toxicity')).toEqual(toxicityBefore);
    const audit = page.locator('table.audit tbody tr').first();
    expect(await audit.textContent()).toContain('insult threshold de');
    expect(await audit.textContent()).toContain('insult in de, from the page');
    await page.screenshot({ path: join(OUT, 'admin-ui-attribute.png'), fullPage: true });
  });

  it('the attribute selector is usable at phone width', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      await page.goto(`${base}/admin/ui?lang=de&attribute=insult`);
      await page.locator('svg[data-chart="histogram"]').waitFor();
      const widths = await page.evaluate('({ doc: document.documentElement.scrollWidth, view: window.innerWidth })') as { doc: number; view: number };
      expect(widths.doc).toBeLessThanOrEqual(widths.view);
      for (const selector of ['select[name="attribute"]', 'button.show-attribute']) {
        const box = await page.locator(selector).boundingBox();
        expect(box!.x).toBeGreaterThanOrEqual(0);
        expect(box!.x + box!.width, selector).toBeLessThanOrEqual(390);
      }
      await page.selectOption('select[name="attribute"]', 'toxicity');
      await page.click('button.show-attribute');
      await page.waitForURL(/attribute=toxicity/);
      expect(await page.locator('.current-attribute').textContent()).toBe('toxicity');
      await page.screenshot({ path: join(OUT, 'admin-ui-attribute-phone.png'), fullPage: true });
    } finally {
      await page.setViewportSize({ width: 1280, height: 1000 });
    }
  });

  it('is usable at phone width: nothing wider than the screen, tables scroll inside their section', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      await page.goto(`${base}/admin/ui?lang=en`);
      await page.locator('svg[data-chart="histogram"]').waitFor();
      const widths = await page.evaluate('({ doc: document.documentElement.scrollWidth, view: window.innerWidth })') as { doc: number; view: number };
      expect(widths.doc).toBeLessThanOrEqual(widths.view);
      const chart = await page.locator('svg[data-chart="histogram"]').boundingBox();
      expect(chart!.width).toBeLessThanOrEqual(390);
      const button = await page.locator('button.reload').boundingBox();
      expect(button!.x + button!.width).toBeLessThanOrEqual(390);
      await page.screenshot({ path: join(OUT, 'admin-ui-phone.png'), fullPage: true });
    } finally {
      await page.setViewportSize({ width: 1280, height: 1000 });
    }
  });
});
