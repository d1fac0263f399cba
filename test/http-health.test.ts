import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ClassifyRequest } from '../src/http/schemas.js';
import { buildTestApp, post, request, type TestApp } from './helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(() => t?.close());

describe('health, info, metrics, openapi', () => {
  it('is alive and ready once warmed up; a deep check runs the pipeline', async () => {
    expect(await (await request(t.app, '/healthz')).json()).toEqual({ status: 'ok' });
    expect(await (await request(t.app, '/readyz')).json()).toMatchObject({ status: 'ready', bundle_version: 'tiny-v1' });
    const batches = async () => Number(/toxscope_batch_size_count (\d+)/.exec(await t.metrics.render())![1]);
    const before = await batches();
    expect((await request(t.app, '/readyz?deep=1')).status).toBe(200);
    expect(await batches()).toBe(before + 1);
  });

  it('describes model, SAE, layer, k, head, limits, provider and the synthetic flag', async () => {
    const info = await (await request(t.app, '/info')).json();
    expect(info).toMatchObject({
      synthetic_backbone: true,
      layer: 2,
      k: 16,
      sae: { format: 'saelens', d_sae: 512, k: 16 },
      model: { family: 'qwen3', num_layers: 4, hidden_size: 64 },
      execution_provider: 'cpu',
      limits: { max_texts_per_request: 64, window_tokens: 64, window_overlap: 8 },
      language_identification: { licence: 'CC-BY-SA-3.0' },
    });
    expect(info.head.thresholds.pooled).toEqual(expect.any(Number));
    expect(Object.keys(info.attributes).sort()).toEqual(['identity_attack', 'insult', 'toxicity']);
    expect(info.attributes.insult.thresholds.pooled).toEqual(expect.any(Number));
    expect(info.openai_categories).toEqual({ harassment: 'toxicity', hate: 'identity_attack' });
    expect(info.head.pooling).toBe('max-segment');
  });

  it('counts requests by route pattern and status, predictions by language and label, in one registry', async () => {
    await post(t.app, '/v1/classify', { texts: ['metrics one', 'metrics two'], language: 'en' });
    await post(t.app, '/v1/classify', { texts: [] });
    const res = await request(t.app, '/metrics');
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await res.text();
    expect(text).toMatch(/toxscope_http_requests_total\{route="\/v1\/classify",method="POST",status="200"\} \d+/);
    expect(text).toMatch(/toxscope_http_requests_total\{route="\/v1\/classify",method="POST",status="422"\} 1/);
    expect(text).toMatch(/toxscope_predictions_total\{language="en",label="(toxic|non_toxic)"\} \d+/);
    expect(text).toMatch(/toxscope_score_bucket\{le="0.5",language="en"\} \d+/);
    for (const attribute of ['toxicity', 'identity_attack', 'insult']) {
      expect(text).toMatch(new RegExp(`toxscope_attribute_predictions_total\\{attribute="${attribute}",language="en",label="(toxic|non_toxic)"\\} \\d+`));
      expect(text).toMatch(new RegExp(`toxscope_attribute_score_count\\{attribute="${attribute}",language="en"\\} \\d+`));
    }
    expect(text).toMatch(/toxscope_tokens_processed_total \d+/);
    expect(text).toMatch(/toxscope_queue_duration_seconds_count \d+/);
    expect(text).toMatch(/toxscope_inference_duration_seconds_count \d+/);
  });

  it('serves an OpenAPI document generated from the schemas that validate requests', async () => {
    const doc = await (await request(t.app, '/openapi.json')).json();
    expect(doc.openapi).toBe('3.0.3');
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/classify', '/v1alpha1/comments:analyze', '/v1/moderations', '/v1/feedback', '/admin/thresholds']));
    const schema = doc.paths['/v1/classify'].post.requestBody.content['application/json'].schema;
    expect(schema).toEqual(JSON.parse(JSON.stringify(z.toJSONSchema(ClassifyRequest, { target: 'openapi-3.0', io: 'input', unrepresentable: 'any' }))));
    expect(schema.required).toEqual(['texts']);
    expect(schema.additionalProperties).toBe(false);
  });

  it('goes unready while draining and refuses new work with 503', async () => {
    const d = await buildTestApp();
    const drained = d.host.drain();
    expect((await request(d.app, '/readyz')).status).toBe(503);
    const res = await post(d.app, '/v1/classify', { texts: ['late'] });
    expect(res.status).toBe(503);
    expect((await res.json()).error.message).toMatch(/shutting down/);
    await drained;
    await d.close();
  });
});
