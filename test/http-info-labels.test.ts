/**
 * Issue #10 item 7: /info names the model, SAE and head (and their content digests) without saying where they
 * lie on disk, except to an admin; and language hints cannot mint new metric series.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, buildTestApp, post, request, TINY_SAE_DIR, type TestApp } from './helpers/app.js';
import { goldenCheckpointDir } from './helpers/goldens.js';

describe('/info and metric labels', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await buildTestApp({ env: { TOXSCOPE_ADMIN_TOKEN: ADMIN_TOKEN } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('shows anonymous callers names, no absolute paths', async () => {
    const text = await (await request(t.app, '/info')).text();
    const info = JSON.parse(text);
    expect(info.model).toMatchObject({ name: 'qwen3-tiny-bf16', num_layers: 4 });
    expect(info.sae).toMatchObject({ name: 'sae-saelens-L2', format: 'saelens' });
    for (const secret of [goldenCheckpointDir, TINY_SAE_DIR, t.dir]) expect(text).not.toContain(secret);
    expect(text).not.toMatch(/"path"/);
    // a wrong token is an anonymous caller
    expect(await (await request(t.app, '/info', { headers: { authorization: 'Bearer not-the-token-at-all' } })).text()).not.toMatch(/"path"/);
  });

  it('shows an admin where the files are', async () => {
    const info = await (await request(t.app, '/info', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
    expect(info.model.path).toBe(goldenCheckpointDir);
    expect(info.sae.path).toBe(TINY_SAE_DIR);
    expect(info.head.path).toMatch(/head\.json$/);
  });

  it('labels predictions of hinted languages the head does not know as other', async () => {
    for (const hint of ['qq', 'zz', 'abc', 'en'])
      expect((await post(t.app, '/v1/classify', { texts: ['you are nice'], language: hint })).status).toBe(200);
    const metrics = await t.metrics.render();
    const languages = new Set([...metrics.matchAll(/toxscope_predictions_total\{language="([^"]+)"/g)].map((m) => m[1]));
    expect(languages.has('other')).toBe(true);
    for (const hint of ['qq', 'zz', 'abc']) expect(languages.has(hint)).toBe(false);
    expect(languages.has('en')).toBe(true); // the head was trained with English: its own series
  });
});
