/**
 * The attribute dimension beyond scoring (issue #13 item 1): on the tiny real bundle with identity_attack and insult
 * heads (test/helpers/app.ts) and an in-memory PGlite behind the write queue, every scored attribute is stored with
 * its prediction; feedback names its attribute through all three APIs (the real `openai` SDK for moderation ids);
 * drift, thresholds (set / revert / audit), prevalence and metrics are per attribute; requests that name no
 * attribute mean toxicity, as before.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { sql } from 'drizzle-orm';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { executeRows } from '../src/db/client.js';
import { createRepository, type Repository } from '../src/db/repository.js';
import { WriteQueue } from '../src/db/write-queue.js';
import { createDriftMonitor, driftReport } from '../src/drift/monitor.js';
import { publishDrift } from '../src/main.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { applyOverrides } from '../src/service/threshold-sync.js';
import { ADMIN_TOKEN, buildTestApp, loadTinyBundle, post, request, type TestApp } from './helpers/app.js';
import { openTestDb, type TestDb } from './helpers/db.js';

const BASELINES = { toxicity: { en: 0.8, de: 0.7 }, insult: { de: 0.6 }, identity_attack: { en: 0.5, de: 0.5 } } as Record<string, Record<string, number>>;
const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
const admin = (path: string, init: RequestInit = {}) => request(t.app, path, { ...init, headers: { ...auth, 'content-type': 'application/json', ...(init.headers ?? {}) } });

let db: TestDb;
let repo: Repository;
let queue: WriteQueue;
let t: TestApp;
let spill: string;

beforeAll(async () => {
  db = await openTestDb('pglite');
  repo = createRepository(db.handle.db);
  spill = mkdtempSync(join(tmpdir(), 'toxscope-attr-dim-'));
  queue = new WriteQueue({ repo, journalDir: join(spill, 'journal'), flushDelayMs: 1 });
  t = await buildTestApp({
    env: { TOXSCOPE_ADMIN_TOKEN: ADMIN_TOKEN },
    deps: {
      predictions: queue,
      audit: repo,
      review: repo,
      matchText: repo,
      drift: (q) => driftReport(repo, BASELINES[q.attribute ?? 'toxicity'] ?? {}, q),
    },
  });
}, 300_000);
afterAll(async () => {
  await t?.close();
  await queue?.close();
  await db?.dispose();
  rmSync(spill, { recursive: true, force: true });
});

async function classify(texts: string[], language: string, attributes?: string[]): Promise<{ id: string; score: number; attributes: Record<string, { score: number; toxic: boolean; threshold: number }> }[]> {
  const res = await post(t.app, '/v1/classify', { texts, language, ...(attributes && { attributes }) });
  expect(res.status).toBe(200);
  return (await res.json()).results;
}

const storedAttributes = async (id: string) =>
  (await executeRows<{ attributes: Record<string, { score: number; threshold: number; label: boolean }> | null }>(db.handle.db, sql`select attributes from predictions where id = ${id}`))[0]?.attributes;

describe('predictions store every scored attribute', () => {
  it("keeps each attribute's score, threshold and decision beside toxicity's columns", async () => {
    const [r] = await classify(['Du bist ein dummer Idiot'], 'de');
    await queue.flush();
    expect(Object.keys(r.attributes).sort()).toEqual(['identity_attack', 'insult', 'toxicity']);
    const stored = await storedAttributes(r.id);
    expect(Object.keys(stored!).sort()).toEqual(['identity_attack', 'insult']);
    for (const name of ['identity_attack', 'insult']) {
      expect(stored![name].score).toBeCloseTo(r.attributes[name].score, 6);
      expect(stored![name].threshold).toBeCloseTo(r.attributes[name].threshold, 6);
      expect(stored![name].label).toBe(r.attributes[name].toxic);
    }
  });

  it('stores only the attributes a request asked for', async () => {
    const [r] = await classify(['Danke, das war hilfreich'], 'de', ['insult']);
    await queue.flush();
    expect(Object.keys((await storedAttributes(r.id))!)).toEqual(['insult']);
  });
});

describe('feedback per attribute: POST /v1/feedback', () => {
  it('labels an attribute of a prediction independently of its toxicity label; no attribute means toxicity', async () => {
    const [r] = await classify(['Du Vollidiot, halt den Mund'], 'de');
    const res = await post(t.app, '/v1/feedback', { items: [{ id: r.id, label: 1, attribute: 'insult' }, { id: r.id, label: 0 }] });
    expect(res.status).toBe(202);
    expect((await res.json()).items).toEqual([
      { id: r.id, attribute: 'insult', status: 'stored' },
      { id: r.id, attribute: 'toxicity', status: 'stored' },
    ]);
    await queue.flush();
    const rows = await executeRows<{ attribute: string; label: boolean }>(db.handle.db, sql`select attribute, label from feedback where prediction_id = ${r.id} order by attribute`);
    expect(rows).toEqual([{ attribute: 'insult', label: true }, { attribute: 'toxicity', label: false }]);
  });

  it('refuses an attribute the bundle does not score with a 422 naming the ones it does, storing nothing of the call', async () => {
    const [r] = await classify(['ein ganz normaler Satz'], 'de');
    const res = await post(t.app, '/v1/feedback', { items: [{ id: r.id, label: 1 }, { id: r.id, label: 1, attribute: 'threat' }] });
    expect(res.status).toBe(422);
    const body = await res.json();
    expect(body.error.kind).toBe('validation');
    expect(body.error.message).toBe("items[1].attribute: unknown attribute 'threat': this bundle scores toxicity, identity_attack, insult");
    await queue.flush();
    expect(await executeRows(db.handle.db, sql`select 1 from feedback where prediction_id = ${r.id}`)).toEqual([]);
    const malformed = await post(t.app, '/v1/feedback', { items: [{ id: r.id, label: 1, attribute: 'INSULT' }] });
    expect(malformed.status).toBe(422);
    expect((await malformed.json()).error.message).toMatch(/items\.0\.attribute: expected an attribute name such as "toxicity" or "identity_attack" \(lower case\)/);
  });
});

describe('feedback per attribute: OpenAI moderation ids (real openai SDK)', () => {
  let server: ServerType;
  let client: OpenAI;
  beforeAll(async () => {
    server = serve({ fetch: t.app.fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise((r) => server.once('listening', r));
    client = new OpenAI({ apiKey: 'not-needed', baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, maxRetries: 0 });
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('labels the attribute behind a category (hate <- identity_attack) of a moderation result', async () => {
    const r = await client.moderations.create({ input: ['All of those people are vermin', 'Have a nice day'] });
    const fb = await client.post<{ items: unknown[] }>('/feedback', {
      body: { items: [{ id: r.id, index: 0, label: 1, attribute: 'identity_attack' }, { id: r.id, index: 0, label: 1 }, { id: r.id, index: 1, label: 0, attribute: 'identity_attack' }] },
    });
    expect(fb.items).toEqual([
      { id: `${r.id}:0`, attribute: 'identity_attack', status: 'stored' },
      { id: `${r.id}:0`, attribute: 'toxicity', status: 'stored' },
      { id: `${r.id}:1`, attribute: 'identity_attack', status: 'stored' },
    ]);
    // the moderation scored the attributes its categories map to: identity_attack is stored with the prediction
    await queue.flush();
    expect(Object.keys((await storedAttributes(`${r.id}:0`))!)).toContain('identity_attack');
  });

  it("takes an OpenAI category instead of an attribute: the bundle's mapping picks it; an unscored category is refused", async () => {
    const r = await client.moderations.create({ input: 'Those people are all subhuman' });
    const fb = await client.post<{ items: unknown[] }>('/feedback', { body: { items: [{ id: r.id, label: 1, category: 'hate' }, { id: r.id, label: 0, category: 'harassment' }] } });
    expect(fb.items).toEqual([
      { id: `${r.id}:0`, attribute: 'identity_attack', status: 'stored' }, // hate <- identity_attack
      { id: `${r.id}:0`, attribute: 'toxicity', status: 'stored' }, // harassment <- toxicity
    ]);
    const unscored = await client.post('/feedback', { body: { items: [{ id: r.id, label: 1, category: 'violence' }] } }).catch((e: unknown) => e);
    expect(unscored).toBeInstanceOf(OpenAI.UnprocessableEntityError);
    expect((unscored as InstanceType<typeof OpenAI.APIError>).message).toMatch(/items\[0\]\.category: 'violence' is not scored by this bundle \(scored: harassment <- toxicity, hate <- identity_attack\)/);
    const both = await client.post('/feedback', { body: { items: [{ id: r.id, label: 1, category: 'hate', attribute: 'insult' }] } }).catch((e: unknown) => e);
    expect((both as InstanceType<typeof OpenAI.APIError>).message).toMatch(/items\[0\]: give attribute or category, not both/);
  });

  it('refuses an unknown attribute: the SDK raises the 422 with the message', async () => {
    const r = await client.moderations.create({ input: 'hello there' });
    const err = await client.post('/feedback', { body: { items: [{ id: r.id, label: 1, attribute: 'self_harm' }] } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.UnprocessableEntityError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(422);
    expect((err as InstanceType<typeof OpenAI.APIError>).message).toMatch(/items\[0\]\.attribute: unknown attribute 'self_harm': this bundle scores toxicity, identity_attack, insult/);
  });
});

describe("feedback per attribute: Perspective's comments:suggestscore", () => {
  const suggest = (text: string, attributeScores: Record<string, number>) =>
    post(t.app, '/v1alpha1/comments:suggestscore', { comment: { text }, attributeScores: Object.fromEntries(Object.entries(attributeScores).map(([k, value]) => [k, { summaryScore: { value } }])) });

  it("maps each attribute it carries (INSULT, TOXICITY) to the bundle's attribute of the matched prediction", async () => {
    const text = 'Du bist so ein Trottel, echt';
    const analyzed = await post(t.app, '/v1alpha1/comments:analyze', { comment: { text }, requestedAttributes: { TOXICITY: {}, INSULT: {} }, languages: ['de'] });
    expect(analyzed.status).toBe(200);
    const res = await suggest(text, { INSULT: 0.9, TOXICITY: 0.2 });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-toxscope-feedback')).toBe('stored');
    expect(res.headers.get('x-toxscope-feedback-attributes')).toBe('INSULT=stored, TOXICITY=stored');
    const id = res.headers.get('x-toxscope-prediction-id')!;
    await queue.flush();
    const rows = await executeRows<{ attribute: string; label: boolean; source: string }>(db.handle.db, sql`select attribute, label, source from feedback where prediction_id = ${id} order by attribute`);
    expect(rows).toEqual([{ attribute: 'insult', label: true, source: 'perspective' }, { attribute: 'toxicity', label: false, source: 'perspective' }]);
    // a second suggestion for insult alone updates that label only
    const again = await suggest(text, { INSULT: 0.1 });
    expect(again.headers.get('x-toxscope-feedback-attributes')).toBe('INSULT=updated');
  });

  it("refuses an attribute the bundle does not score, in Perspective's error shape, storing nothing", async () => {
    const text = 'ein weiterer Kommentar';
    await post(t.app, '/v1alpha1/comments:analyze', { comment: { text }, requestedAttributes: { TOXICITY: {} }, languages: ['de'] });
    const res = await suggest(text, { TOXICITY: 1, THREAT: 1 });
    expect(res.status).toBe(400);
    expect((await res.json()).error).toEqual({ code: 400, status: 'INVALID_ARGUMENT', message: 'attributeScores: THREAT is not supported by this service (supported: TOXICITY, IDENTITY_ATTACK, INSULT)' });
    expect(res.headers.get('x-toxscope-feedback')).toBeNull();
  });
});

describe('drift per (attribute, language)', () => {
  it("counts an attribute's own decisions against its own labels; GET /admin/drift without an attribute is toxicity", async () => {
    const texts = ['Du bist ein Idiot', 'Halt die Klappe, du Depp', 'Schönes Wetter heute', 'Ich mag Katzen', 'Du Versager', 'Wir sehen uns morgen'];
    const results = await classify(texts, 'nl'); // a language of its own in this file: counts start at zero
    const before = await admin('/admin/drift?language=nl&window=1h&attribute=insult');
    expect(before.status).toBe(200);
    expect((await before.json()).languages.nl.n).toBe(0);
    // insult labels for all six, toxicity labels for two
    const truth = [1, 1, 0, 0, 1, 0];
    const fb = await post(t.app, '/v1/feedback', { items: [...results.map((r, i) => ({ id: r.id, label: truth[i], attribute: 'insult' })), { id: results[0].id, label: 1 }, { id: results[2].id, label: 0 }] });
    expect(fb.status).toBe(202);
    await queue.flush();

    const insult = await (await admin('/admin/drift?language=nl&window=1h&attribute=insult')).json();
    const expected = { tp: 0, fp: 0, fn: 0, tn: 0 };
    results.forEach((r, i) => {
      const predicted = r.attributes.insult.toxic;
      const key = predicted ? (truth[i] ? 'tp' : 'fp') : truth[i] ? 'fn' : 'tn';
      expected[key as keyof typeof expected]++;
    });
    expect(insult.attribute).toBe('insult');
    expect(insult.languages.nl.n).toBe(6);
    const ratio = (num: number, den: number) => (den > 0 ? expect.closeTo(num / den, 6) : null);
    const { tp, fp, fn } = expected;
    expect(insult.languages.nl).toMatchObject({ precision: ratio(tp, tp + fp), recall: ratio(tp, tp + fn), f1: ratio(2 * tp, 2 * tp + fp + fn), baseline: null });
    const toxicity = await (await admin('/admin/drift?language=nl&window=1h')).json();
    expect(toxicity.attribute).toBe('toxicity');
    expect(toxicity.languages.nl.n).toBe(2);
  });

  it('refuses an attribute the bundle does not score, and a malformed one, naming the field', async () => {
    const unknown = await admin('/admin/drift?attribute=threat');
    expect(unknown.status).toBe(422);
    expect((await unknown.json()).error.message).toBe("attribute: unknown attribute 'threat': this bundle scores toxicity, identity_attack, insult");
    const malformed = await admin('/admin/drift?attribute=Drop%20table');
    expect(malformed.status).toBe(422);
    expect((await malformed.json()).error.message).toMatch(/^attribute: expected an attribute name/);
  });

  it("stores F1 windows per attribute and exports drift gauges with an attribute label (bundle's attributes and languages only)", async () => {
    // windows end on a multiple of the interval: a clock two minutes ahead puts this file's predictions inside one
    const ahead = () => new Date(Date.now() + 120_000);
    const monitor = createDriftMonitor({ repo, baselines: BASELINES.toxicity, attributes: { insult: BASELINES.insult, identity_attack: BASELINES.identity_attack }, windowMs: 3_600_000, now: ahead });
    const snapshot = await monitor.runOnce();
    expect(Object.keys(snapshot.attributes)).toEqual(['toxicity', 'identity_attack', 'insult']);
    expect(snapshot.attributes.insult.languages.nl.n).toBe(6);
    expect(snapshot.attributes.toxicity.languages.nl.n).toBe(2);
    expect(snapshot.languages).toEqual(snapshot.attributes.toxicity.languages); // the toxicity view as before
    const windows = await repo.latestF1Windows('nl', { attribute: 'insult' });
    expect(windows.map((w) => [w.attribute, w.n])).toEqual([['insult', 6]]);
    expect((await repo.latestF1Windows('nl')).map((w) => [w.attribute, w.n])).toEqual([['toxicity', 2]]);

    // gauges: {attribute, language} for the bundle's attributes and each one's own languages (nl has no baseline: none)
    const metrics = createMetrics({ processDefaults: false });
    publishDrift(metrics, snapshot, { ...BASELINES.toxicity, nl: 0.5 }, { insult: { ...BASELINES.insult, nl: 0.5 } });
    const text = await metrics.render();
    expect(text).toMatch(/toxscope_labeled_in_window\{attribute="insult",language="nl"\} 6\n/);
    expect(text).toMatch(/toxscope_labeled_in_window\{attribute="toxicity",language="nl"\} 2\n/);
    expect(text).toMatch(/toxscope_feedback_total\{attribute="insult",language="nl"\} \d+/);
    expect(text).not.toMatch(/attribute="identity_attack"/); // not given as one of the bundle's attributes here: no series
    expect(text).not.toMatch(/language="sv"/);
  });
});

describe('thresholds per attribute: set, revert to the bundle, audit', () => {
  it("changes one attribute's threshold and leaves the others; /v1/classify decides with it; revert restores the bundle's", async () => {
    const toxicityBefore = await (await admin('/admin/thresholds')).json();
    const insultBefore = await (await admin('/admin/thresholds?attribute=insult')).json();
    expect(insultBefore.attribute).toBe('insult');
    expect(insultBefore.attributes).toEqual(['toxicity', 'identity_attack', 'insult']);

    const set = await admin('/admin/thresholds', { method: 'PUT', body: JSON.stringify({ attribute: 'insult', thresholds: { pooled: 0.999, de: 0.001 }, actor: 'alice', reason: 'insult too lenient in de' }) });
    expect(set.status).toBe(200);
    const view = await set.json();
    expect(view).toMatchObject({ attribute: 'insult', pooled: 0.999, per_language: { de: 0.001 }, sources: { pooled: 'override', de: 'override' } });
    expect(await (await admin('/admin/thresholds')).json()).toEqual(toxicityBefore); // toxicity untouched

    const [de] = await classify(['Guten Morgen zusammen'], 'de');
    expect(de.attributes.insult).toMatchObject({ threshold: 0.001, toxic: true });
    const [en] = await classify(['Good morning everyone'], 'en');
    expect(en.attributes.insult).toMatchObject({ threshold: 0.999, toxic: false });
    expect(en.attributes.toxicity.threshold).toBe(toxicityBefore.per_language.en ?? toxicityBefore.pooled);

    const revert = await admin('/admin/thresholds', { method: 'PUT', body: JSON.stringify({ attribute: 'insult', thresholds: { pooled: 'bundle', de: 'bundle' }, actor: 'bob' }) });
    expect(revert.status).toBe(200);
    const reverted = await revert.json();
    expect(reverted.pooled).toBe(insultBefore.pooled);
    expect(reverted.per_language).toEqual(insultBefore.per_language);

    const audit = await (await admin('/admin/audit?attribute=insult')).json();
    const rows = audit.changes.map((c: any) => [c.attribute, c.language, c.actor, c.reason, c.new]);
    expect(rows).toEqual(
      expect.arrayContaining([
        ['insult', 'pooled', 'alice', 'insult too lenient in de', 0.999],
        ['insult', 'de', 'alice', 'insult too lenient in de', 0.001],
        ['insult', 'pooled', 'bob', "reverted to the bundle's threshold", insultBefore.pooled],
      ]),
    );
    expect(audit.changes.every((c: any) => c.attribute === 'insult')).toBe(true);
    // replayed as recorded: the stored overrides of this version reproduce the serving insult head
    expect(await repo.thresholdOverrides('tiny-v1', 'insult')).toMatchObject({ pooled: insultBefore.pooled });
  });

  it('refuses an unknown attribute before recording anything', async () => {
    const before = (await repo.listThresholdChanges({ limit: 10_000 })).length;
    const res = await admin('/admin/thresholds', { method: 'PUT', body: JSON.stringify({ attribute: 'threat', thresholds: { pooled: 0.5 } }) });
    expect(res.status).toBe(422);
    expect((await res.json()).error.message).toBe("attribute: unknown attribute 'threat': this bundle scores toxicity, identity_attack, insult");
    expect((await admin('/admin/thresholds?attribute=threat')).status).toBe(422);
    expect((await repo.listThresholdChanges({ limit: 10_000 })).length).toBe(before);
  });
});

describe('prevalence per attribute', () => {
  it("reads and shifts one attribute's calibration; toxicity's stays", async () => {
    const view = await admin('/admin/prevalence?attribute=identity_attack');
    expect(view.status).toBe(200);
    const body = await view.json();
    expect(body.attribute).toBe('identity_attack');
    expect(body.sample).not.toBeNull();
    expect(body.feedback_estimate).toBeDefined();
    const toxicity = await (await admin('/admin/thresholds')).json();
    const res = await admin('/admin/prevalence', { method: 'PUT', body: JSON.stringify({ attribute: 'identity_attack', prevalence: { pooled: 0.02 }, actor: 'carol' }) });
    expect(res.status).toBe(200);
    const changed = await res.json();
    expect(changed.attribute).toBe('identity_attack');
    expect(changed.deployment.pooled).toBe(0.02);
    expect(changed.thresholds.attribute).toBe('identity_attack');
    expect(await (await admin('/admin/thresholds')).json()).toEqual(toxicity);
    expect((await (await admin('/admin/prevalence')).json()).deployment?.pooled ?? null).not.toBe(0.02);
    const audit = await (await admin('/admin/audit?attribute=identity_attack')).json();
    expect(audit.changes.some((c: any) => c.language === 'prevalence:pooled' && c.actor === 'carol' && c.new === 0.02)).toBe(true);
  });
});

describe('replay per attribute after a restart (or on another replica)', () => {
  it("a freshly loaded bundle of the same version gets every attribute's stored thresholds and prevalence", async () => {
    const serving = t.host.current().classifier;
    const fresh = await loadTinyBundle(join(t.dir, 'v1'), t.config);
    try {
      const c = fresh.classifier;
      expect(c.version).toBe(serving.version);
      // before the replay: the bundle's own (the earlier tests moved insult and identity_attack)
      expect(c.attributeHead('identity_attack')!.thresholds).not.toEqual(serving.attributeHead('identity_attack')!.thresholds);
      const outcome = await applyOverrides(c, repo);
      expect(outcome.status).toBe('changed');
      for (const name of serving.attributeNames) {
        expect(c.attributeHead(name)!.thresholds, name).toEqual(serving.attributeHead(name)!.thresholds);
        expect(c.attributeHead(name)!.prior?.deployment, name).toEqual(serving.attributeHead(name)!.prior?.deployment);
      }
      expect(c.attributeHead('identity_attack')!.prior?.deployment.pooled).toBe(0.02);
      expect(await applyOverrides(c, repo)).toEqual({ status: 'unchanged', version: c.version });
    } finally {
      await fresh.classifier.close();
    }
  });
});
