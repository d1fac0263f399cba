/**
 * /admin/ui in-process (app.request, no browser): the login cookie, the refusals, the numbers the page
 * shows against an independent computation from the classified posts, and a threshold applied through
 * PUT /admin/thresholds (audit log included). The browser test is test/admin-ui.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { f1Stats } from '../src/drift/f1.js';
import { confusionAt, previewThreshold, thresholdCurve } from '../src/http/admin-ui/stats.js';
import { ADMIN_COOKIE } from '../src/http/routes/admin-ui.js';
import { adminUiFixture, type AdminUiFixture } from './admin-ui-fixture.js';
import { ADMIN_TOKEN, buildTestApp, request } from './helpers/app.js';

let f: AdminUiFixture;
beforeAll(async () => {
  f = await adminUiFixture();
});
afterAll(async () => {
  await f?.close();
});

const form = (fields: Record<string, string>) => ({ 'content-type': 'application/x-www-form-urlencoded', body: new URLSearchParams(fields).toString() });
const cookie = `${ADMIN_COOKIE}=${ADMIN_TOKEN}`;
const page = (path: string, headers: Record<string, string> = { cookie }) => request(f.t.app, path, { headers });
const apiThresholds = async () => (await request(f.t.app, '/admin/thresholds', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();

describe('login', () => {
  it('sends a browser without the cookie to the login form', async () => {
    const res = await page('/admin/ui', {});
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/admin/ui/login');
    const login = await page('/admin/ui/login', {});
    expect(login.status).toBe(200);
    expect(await login.text()).toContain('name="token"');
  });

  it('sets an HttpOnly, SameSite=Strict cookie scoped to /admin/ui for the right token only', async () => {
    const wrong = await request(f.t.app, '/admin/ui/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=not-the-token' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();
    const { body, ...headers } = form({ token: ADMIN_TOKEN });
    const ok = await request(f.t.app, '/admin/ui/login', { method: 'POST', headers, body });
    expect(ok.status).toBe(303);
    const set = ok.headers.get('set-cookie')!;
    expect(set).toContain(`${ADMIN_COOKIE}=${ADMIN_TOKEN}`);
    expect(set).toMatch(/HttpOnly/);
    expect(set).toMatch(/SameSite=Strict/);
    expect(set).toMatch(/Path=\/admin\/ui/);
    expect((await page('/admin/ui', { cookie: set.split(';')[0] })).status).toBe(200);
  });

  it('accepts the bearer header too, and refuses a wrong cookie', async () => {
    expect((await page('/admin/ui', { authorization: `Bearer ${ADMIN_TOKEN}` })).status).toBe(200);
    expect((await page('/admin/ui', { cookie: `${ADMIN_COOKIE}=${ADMIN_TOKEN}x` })).status).toBe(303);
  });

  it('is 403 when no admin token is configured', async () => {
    const closed = await buildTestApp();
    try {
      const res = await request(closed.app, '/admin/ui/login');
      expect(res.status).toBe(403);
      expect(await res.text()).toContain('TOXSCOPE_ADMIN_TOKEN');
    } finally {
      await closed.close();
    }
  });

  it('refuses a form post from another origin', async () => {
    const { body, ...headers } = form({ language: 'en', threshold: '0.1' });
    const res = await request(f.t.app, '/admin/ui/thresholds', { method: 'POST', headers: { ...headers, cookie, origin: 'https://evil.example' }, body });
    expect(res.status).toBe(403);
    expect((await apiThresholds()).per_language.en).not.toBe(0.1);
  });
});

describe('the page', () => {
  it('shows each language with feedback, and for the selected one a histogram of every prediction', async () => {
    const html = await (await page('/admin/ui?lang=de')).text();
    expect(html).toContain('scores measure the pipeline only'); // the test bundle's synthetic-backbone notice
    for (const lang of ['en', 'de']) expect(html).toContain(`<tr data-language="${lang}"`);
    const de = f.predictions.filter((p) => p.lang === 'de');
    expect(html).toMatch(new RegExp(`data-chart="histogram" data-language="de" data-total="${de.length}" data-labeled="${de.length}"`));
    // the toxic bars hold exactly the posts labeled toxic, each in the bar of its score
    const toxicBars = [...html.matchAll(/<rect class="bar toxic" data-bin="\d+" data-lo="([\d.]+)" data-hi="([\d.]+)" data-count="(\d+)"/g)].map((m) => ({ lo: Number(m[1]), hi: Number(m[2]), n: Number(m[3]) }));
    const toxicPosts = de.filter((x) => x.label === 1);
    expect(toxicBars.reduce((s, b) => s + b.n, 0)).toBe(toxicPosts.length);
    for (const bar of toxicBars) expect(toxicPosts.filter((p) => p.score >= bar.lo - 1e-6 && p.score < bar.hi + 1e-6).length, `[${bar.lo}, ${bar.hi})`).toBeGreaterThanOrEqual(bar.n);
    expect(html).toContain('data-chart="threshold-curve" data-language="de"');
    expect(html).toMatch(/data-chart="drift" data-language="de"[\s\S]*?data-series="F1" data-points="3"/);
  });

  it('reports precision/recall/F1 at the current threshold as recomputed from the posts and their labels', async () => {
    const thresholds = await apiThresholds();
    const html = await (await page('/admin/ui')).text();
    for (const lang of ['en', 'de']) {
      const rows = f.predictions.filter((p) => p.lang === lang).map((p) => ({ score: p.score, truth: p.label === 1 }));
      const t = thresholds.per_language[lang] ?? thresholds.pooled;
      const s = f1Stats(confusionAt(rows, t));
      const pct = (v: number | null) => (v === null ? '–' : (100 * v).toFixed(1) + '%');
      const row = new RegExp(`<tr data-language="${lang}"[^>]*>[\\s\\S]*?</tr>`).exec(html)![0];
      expect(row).toContain(`<td>${rows.length}</td><td>${rows.length}</td>`);
      expect(row).toContain(`<td>${pct(s.precision)}</td><td>${pct(s.recall)}</td><td>${pct(s.f1)}</td>`);
    }
  });

  it('previews a threshold: the flips and the new precision/recall of the labeled predictions', async () => {
    const thresholds = await apiThresholds();
    const en = f.predictions.filter((p) => p.lang === 'en');
    const current = thresholds.per_language.en ?? thresholds.pooled;
    const sorted = en.map((p) => p.score).sort((a, b) => a - b);
    const proposed = Number(sorted[Math.floor(sorted.length / 2)].toFixed(3)); // the median: some labels must flip
    const flips = en.filter((p) => p.score >= current !== p.score >= proposed).length;
    expect(flips).toBeGreaterThan(0);
    const html = await (await page(`/admin/ui?lang=en&preview=${proposed}`)).text();
    expect(html).toContain(`data-flips="${flips}"`);
    const labeled = en.map((p) => ({ score: p.score, truth: p.label === 1 }));
    const [before, after] = [current, proposed].map((t) => f1Stats(confusionAt(labeled, t)));
    const pct = (v: number | null) => (v === null ? '–' : (100 * v).toFixed(1) + '%');
    expect(html).toContain(`<tr><td>precision</td><td>${pct(before.precision)}</td><td class="delta">${pct(after.precision)}</td></tr>`);
    expect(html).toContain(`<tr><td>recall</td><td>${pct(before.recall)}</td><td class="delta">${pct(after.recall)}</td></tr>`);
    expect(html).toMatch(new RegExp(`name="threshold" value="${proposed}"`));
    // a preview changes nothing
    expect((await apiThresholds()).per_language.en).toBe(thresholds.per_language.en);
  });

  it('applies a threshold through PUT /admin/thresholds: the API sees it and the audit log names the page', async () => {
    const { body, ...headers } = form({ language: 'de', threshold: '0.4321', reason: 'tuned on the admin page', window: '7d' });
    const res = await request(f.t.app, '/admin/ui/thresholds', { method: 'POST', headers: { ...headers, cookie, origin: 'http://localhost' }, body });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/admin/ui?lang=de&window=7d&applied=1');
    expect((await apiThresholds()).per_language.de).toBe(0.4321);
    const audit = await (await request(f.t.app, '/admin/audit?language=de', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
    expect(audit.changes[0]).toMatchObject({ actor: 'admin-ui', language: 'de', new: expect.closeTo(0.4321, 6), reason: 'tuned on the admin page' });
    expect(await (await page(res.headers.get('location')!)).text()).toContain('The threshold for de is now 0.4321');
  });

  it('shows the API\'s refusal of an invalid threshold and changes nothing', async () => {
    const before = await apiThresholds();
    const { body, ...headers } = form({ language: 'de', threshold: '1.5' });
    const res = await request(f.t.app, '/admin/ui/thresholds', { method: 'POST', headers: { ...headers, cookie }, body });
    expect(res.status).toBe(422);
    expect(await res.text()).toMatch(/The threshold was not changed \(422\)/);
    expect(await apiThresholds()).toEqual(before);
  });
});

describe('admin page numbers', () => {
  const rows = [0.1, 0.35, 0.5, 0.62, 0.8, 0.95].map((score, i) => ({ score, truth: i % 2 === 1 }));

  it('previewThreshold counts flips both ways and whether they agree with the labels', () => {
    const p = previewThreshold(rows, 0.5, 0.3);
    // 0.35 (toxic) flips clean -> toxic: fixed
    expect(p.flips).toEqual({ toToxic: 1, toClean: 0 });
    expect([p.fixed, p.broken]).toEqual([1, 0]);
    const back = previewThreshold(rows, 0.3, 0.9);
    // 0.35 (toxic), 0.5 (clean), 0.62 (toxic), 0.8 (clean) become clean: 2 fixed, 2 broken
    expect(back.flips).toEqual({ toToxic: 0, toClean: 4 });
    expect([back.fixed, back.broken]).toEqual([2, 2]);
    expect(back.after).toMatchObject({ tp: 1, fp: 0, fn: 2, tn: 3, precision: 1, recall: 1 / 3 });
  });

  it('thresholdCurve equals confusionAt at every step, ties on the threshold counting as toxic', () => {
    const curve = thresholdCurve(rows, 20);
    expect(curve).toHaveLength(21);
    for (const point of curve) expect(point).toEqual({ threshold: point.threshold, ...f1Stats(confusionAt(rows, point.threshold)) });
    expect(curve.find((p) => p.threshold === 0.5)!.precision).toBeCloseTo(2 / 4);
  });
});

describe('repository queries of the page', () => {
  it('scoreBins counts every prediction once, in its bin, split by feedback label', async () => {
    const now = new Date(Date.now() + 3_600_000);
    const bins = await f.repo.scoreBins(new Date(0), now, 10);
    expect(bins.reduce((s, b) => s + b.n, 0)).toBe(f.predictions.length);
    for (const p of f.predictions.slice(0, 10)) {
      // scores are stored as float4: only bins away from an edge are certain
      if (Math.abs(p.score * 10 - Math.round(p.score * 10)) < 1e-5) continue;
      const bin = bins.find((b) => b.language === p.lang && b.bin === Math.min(9, Math.floor(p.score * 10)) && b.truth === (p.label === 1));
      expect(bin, `${p.lang} ${p.score}`).toBeDefined();
    }
    await expect(f.repo.scoreBins(new Date(0), now, 0)).rejects.toThrow(/bins must be an integer/);
  });

  it('labeledScores and f1WindowHistory return the labeled rows and the stored windows, oldest window first', async () => {
    const now = new Date(Date.now() + 3_600_000);
    const de = await f.repo.labeledScores(new Date(0), now, { language: 'de' });
    expect(de).toHaveLength(f.predictions.filter((p) => p.lang === 'de').length);
    const posts = f.predictions.filter((p) => p.lang === 'de');
    expect(de.filter((r) => r.truth).length).toBe(posts.filter((p) => p.label === 1).length);
    const sortedScores = (xs: number[]) => [...xs].sort((a, b) => a - b);
    const stored = sortedScores(de.map((r) => r.score));
    sortedScores(posts.map((p) => p.score)).forEach((score, i) => expect(stored[i]).toBeCloseTo(score, 6)); // stored as float4
    const history = await f.repo.f1WindowHistory(new Date(0), { language: 'en' });
    expect(history).toHaveLength(3);
    expect(history.map((h) => h.n)).toEqual([...history.map((h) => h.n)].sort((a, b) => a - b));
    expect(history.at(-1)!.n).toBe(f.predictions.filter((p) => p.lang === 'en').length);
    expect((await f.repo.f1WindowHistory(new Date(0), { language: 'en', limit: 1 }))[0].windowEnd).toEqual(history.at(-1)!.windowEnd);
  });
});
