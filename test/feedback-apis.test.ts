/**
 * Feedback from every API, through the whole service (startService on a trained bundle, embedded PGlite): the id
 * of an OpenAI moderation response (real `openai` SDK) and Perspective's comments:suggestscore become labels of
 * the right stored predictions, and drift sees them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startService, type RunningService } from '../src/main.js';
import { createLogger } from '../src/util/logger.js';
import { trainServeBundle } from './helpers/serve-bundle.js';

const root = mkdtempSync(join(tmpdir(), 'toxscope-feedback-apis-'));
const token = 'feedback-test-admin-token-1234';
let svc: RunningService;
let client: OpenAI;

beforeAll(async () => {
  const bundleDir = join(root, 'bundle');
  await trainServeBundle(bundleDir, 'feedback-apis', join(root, 'cache'));
  const config = loadConfig({ env: { PORT: '0', HOST: '127.0.0.1', TOXSCOPE_BUNDLE: bundleDir, TOXSCOPE_DATA_DIR: join(root, 'data'), TOXSCOPE_ADMIN_TOKEN: token, TOXSCOPE_THREADS: '1' } });
  svc = await startService(config, createLogger('silent'));
  await svc.ready;
  client = new OpenAI({ apiKey: 'not-needed', baseURL: `${svc.url}/v1`, maxRetries: 0 });
}, 180_000);
afterAll(async () => {
  await svc?.shutdown('test');
  rmSync(root, { recursive: true, force: true });
});

const postJson = (path: string, body: unknown) => fetch(`${svc.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const labeledEn = async () => {
  const res = await fetch(`${svc.url}/admin/drift?language=en&window=1h`, { headers: { authorization: `Bearer ${token}` } });
  return ((await res.json()) as any).languages.en?.n ?? 0;
};

interface FeedbackAnswer {
  items: { id: string; status: string; note?: string }[];
}

describe('OpenAI moderation ids as feedback (real openai SDK)', () => {
  it('labels the prediction behind each result of a moderation response: {id, index}', async () => {
    const before = await labeledEn();
    const r = await client.moderations.create({ input: ['You are a worthless idiot', 'Thanks, have a great day!'] });
    expect(r.id).toMatch(/^modr-[0-9a-f]{32}$/);
    // the SDK's own request method: feedback is one more call on the same client
    const fb = await client.post<FeedbackAnswer>('/feedback', { body: { items: [{ id: r.id, index: 0, label: 1 }, { id: r.id, index: 1, label: 0 }], source: 'openai-moderators' } });
    expect(fb.items).toEqual([
      { id: `${r.id}:0`, attribute: 'toxicity', status: 'stored' },
      { id: `${r.id}:1`, attribute: 'toxicity', status: 'stored' },
    ]);
    // without an index: the first result; a second label replaces the first
    const again = await client.post<FeedbackAnswer>('/feedback', { body: { items: [{ id: r.id, label: 0 }] } });
    expect(again.items[0]).toMatchObject({ id: `${r.id}:0`, status: 'updated' });
    // drift counts both once the write queue has written them (it batches writes for up to its flush delay)
    let labeled = await labeledEn();
    for (let i = 0; i < 50 && labeled < before + 2; i++) {
      await new Promise((r) => setTimeout(r, 200));
      labeled = await labeledEn();
    }
    expect(labeled).toBe(before + 2);
  });

  it('says which ids it does not know, and refuses an index on an id that is not a moderation id', async () => {
    const unknown = await client.post<FeedbackAnswer>('/feedback', { body: { items: [{ id: `modr-${'0'.repeat(32)}`, index: 3, label: 1 }] } });
    expect(unknown.items[0]).toMatchObject({ id: `modr-${'0'.repeat(32)}:3`, status: 'unknown_id' });
    const res = await postJson('/v1/feedback', { items: [{ id: 'b5a3a4e8-2b7e-4a43-9a4c-0d4a6f0e5d11', index: 1, label: 1 }] });
    expect(res.status).toBe(422);
    expect(((await res.json()) as any).error.message).toMatch(/items\[0\]\.index: only a moderation id/);
  });
});

describe("Perspective's comments:suggestscore as feedback", () => {
  const analyze = (text: string, extra: Record<string, unknown> = {}) => postJson('/v1alpha1/comments:analyze', { comment: { text }, requestedAttributes: { TOXICITY: {} }, languages: ['en'], ...extra });
  const suggest = (text: string, value: number) =>
    postJson('/v1alpha1/comments:suggestscore', { comment: { text }, attributeScores: { TOXICITY: { summaryScore: { value } } }, languages: ['en'], clientToken: 'ct-9' });

  it("labels the prediction of the same text, answering in Perspective's shape", async () => {
    const text = 'you are a complete moron, go away';
    expect((await analyze(text)).status).toBe(200);
    const res = await suggest(text, 1);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ requestedLanguages: ['en'], clientToken: 'ct-9' });
    expect(res.headers.get('x-toxscope-feedback')).toBe('stored');
    expect(res.headers.get('x-toxscope-prediction-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('resolves a text scored several times: the newest unlabeled prediction first, then the newest is updated', async () => {
    const text = 'what a lovely idea, thank you so much';
    await analyze(text);
    await analyze(text);
    const first = await suggest(text, 0);
    const second = await suggest(text, 0);
    const third = await suggest(text, 1);
    const ids = [first, second, third].map((r) => r.headers.get('x-toxscope-prediction-id'));
    expect([first, second, third].map((r) => r.headers.get('x-toxscope-feedback'))).toEqual(['stored', 'stored', 'updated']);
    expect(first.headers.get('x-toxscope-feedback-candidates')).toBe('2');
    expect(ids[0]).not.toBe(ids[1]); // both predictions got a label
    expect(ids[2]).toBe(ids[0]); // then the newest is updated
  });

  it('stores nothing for a text it never scored (or scored with doNotStore), and says so', async () => {
    const never = await suggest('a comment this service never saw', 1);
    expect(never.status).toBe(200);
    expect(never.headers.get('x-toxscope-feedback')).toBe('unmatched');
    expect(never.headers.get('x-toxscope-prediction-id')).toBeNull();
    await analyze('private comment, do not keep it', { doNotStore: true });
    expect((await suggest('private comment, do not keep it', 1)).headers.get('x-toxscope-feedback')).toBe('unmatched');
  });

  it("refuses a suggestion with no score, or for an attribute this bundle does not score, in Perspective's error shape", async () => {
    const none = await postJson('/v1alpha1/comments:suggestscore', { comment: { text: 'hi' }, attributeScores: {} });
    expect(none.status).toBe(400);
    const body = (await none.json()) as any;
    expect(body.error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT' });
    expect(body.error.message).toMatch(/^attributeScores: must hold at least one attribute summaryScore/);
    // this bundle scores toxicity only
    const insult = await postJson('/v1alpha1/comments:suggestscore', { comment: { text: 'hi' }, attributeScores: { INSULT: { summaryScore: { value: 1 } } } });
    expect(insult.status).toBe(400);
    expect(((await insult.json()) as any).error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT', message: 'attributeScores: INSULT is not supported by this service (supported: TOXICITY)' });
  });
});
