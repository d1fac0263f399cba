import { describe, expect, it } from 'vitest';
import { createMetrics } from '../src/metrics/metrics.js';

describe('createMetrics', () => {
  it('gives each instance its own registry so two services never share counters', async () => {
    const a = createMetrics({ processDefaults: false });
    const b = createMetrics({ processDefaults: false });
    a.requests.inc({ route: '/v1/classify', method: 'POST', status: '200' });
    expect(await a.render()).toContain('toxscope_http_requests_total{route="/v1/classify",method="POST",status="200"} 1');
    expect(await b.render()).not.toContain('status="200"');
  });

  it('names every metric with the toxscope_ prefix and durations in seconds', async () => {
    const m = createMetrics();
    const names = (await m.registry.getMetricsAsJSON()).map((x) => x.name);
    expect(names.every((n) => n.startsWith('toxscope_'))).toBe(true);
    expect(names).toEqual(expect.arrayContaining([
      'toxscope_http_request_duration_seconds', 'toxscope_queue_duration_seconds', 'toxscope_inference_duration_seconds',
      'toxscope_batch_size', 'toxscope_batch_tokens', 'toxscope_queue_depth', 'toxscope_tokens_processed_total',
      'toxscope_predictions_total', 'toxscope_score', 'toxscope_f1', 'toxscope_f1_drift', 'toxscope_feedback_total',
      'toxscope_process_cpu_seconds_total',
    ]));
    const histograms = (await m.registry.getMetricsAsJSON()).filter((x) => String(x.type) === 'histogram' && /duration/.test(x.name));
    expect(histograms.every((h) => h.name.endsWith('_seconds'))).toBe(true);
  });

  it('records drift gauges per attribute and language', async () => {
    const m = createMetrics({ processDefaults: false });
    m.f1.set({ attribute: 'toxicity', language: 'de' }, 0.8);
    m.f1Drift.set({ attribute: 'toxicity', language: 'de' }, -0.07);
    m.f1Drift.set({ attribute: 'insult', language: 'de' }, 0.02);
    expect(await m.render()).toMatch(/toxscope_f1_drift\{attribute="toxicity",language="de"\} -0.07/);
    expect(await m.render()).toMatch(/toxscope_f1_drift\{attribute="insult",language="de"\} 0.02/);
  });
});
