/** POST /v1/classify: ToxScope's own API. */
import { Hono } from 'hono';
import { admitted } from '../middleware.js';
import type { ServiceDeps } from '../../service/deps.js';
import type { z } from 'zod';
import { classifyTexts } from '../../service/classify.js';
import { setScoreHeaders } from '../score-headers.js';
import { ClassifyRequest, type ClassifyResponse } from '../schemas.js';
import { jsonBody, valid } from '../validate.js';

const ms = (x: number) => Math.round(x * 1000) / 1000;

export function classifyRoutes(deps: ServiceDeps): Hono {
  const app = new Hono();
  app.post('/classify', admitted(deps), jsonBody(), valid(ClassifyRequest), async (c) => {
    const body = c.req.valid('json');
    const { out, ids, info } = await classifyTexts(deps, {
      texts: body.texts,
      language: body.language,
      explain: body.explain,
      topFeatures: body.top_features,
      attributes: body.attributes,
      signal: c.req.raw.signal,
      requestId: c.get('requestId'),
    });
    setScoreHeaders(c, out, info);
    const response: z.infer<typeof ClassifyResponse> = {
      request_id: c.get('requestId'),
      bundle_version: out.version,
      ...(info.syntheticBackbone && { synthetic_backbone: true, notice: info.notice ?? 'synthetic backbone: scores measure the pipeline, not Qwen3 features' }),
      results: out.results.map((r, i) => ({
        id: ids[i],
        score: r.score,
        toxic: r.toxic,
        threshold: r.threshold,
        language: r.language,
        tokens: r.tokens,
        windows: r.windows,
        span: { start: r.span[0], end: r.span[1] },
        attributes: Object.fromEntries(
          Object.entries(r.attributes).map(([name, a]) => [name, { score: a.score, toxic: a.toxic, threshold: a.threshold, thresholds: a.thresholds, span: { start: a.span[0], end: a.span[1] } }]),
        ),
        ...(r.explanation && {
          features: r.explanation.map((f) => ({
            id: f.id,
            contribution: f.contribution,
            firing_rate: f.firingRate,
            spans: f.spans.map(([start, end]) => ({ start, end })),
            ...(f.label !== undefined && { label: f.label, top_tokens: f.topTokens }),
            ...(f.snippets && { snippets: f.snippets }),
          })),
        }),
      })),
      timings: {
        tokenize_ms: ms(out.timings.tokenizeMs),
        queue_ms: ms(out.timings.queueMs),
        inference_ms: ms(out.timings.inferenceMs),
        total_ms: ms(out.timings.totalMs),
      },
    };
    return c.json(response);
  });
  return app;
}
