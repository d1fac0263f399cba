/** The OpenAPI 3.0 document, generated from the zod schemas that validate requests (src/http/schemas.ts). */
import { z } from 'zod';
import * as s from './schemas.js';

const json = (schema: z.ZodType, io: 'input' | 'output') => ({ 'application/json': { schema: z.toJSONSchema(schema, { target: 'openapi-3.0', io, unrepresentable: 'any' }) } });
const body = (schema: z.ZodType) => ({ required: true, content: json(schema, 'input') });
const ok = (schema: z.ZodType, description = 'OK') => ({ description, content: json(schema, 'output') });
const err = (description: string) => ({ description, content: json(s.ErrorResponse, 'output') });
const common = { 413: err('over a configured limit'), 422: err('invalid request'), 429: err('queue full: retry after Retry-After seconds'), 503: err('not ready or draining'), 504: err('request deadline passed') };
const admin = { 401: err('missing or wrong bearer token'), 403: err('admin disabled: no token configured') };

/** ?attribute= of the admin reads (default toxicity). */
const attributeParam = { name: 'attribute', in: 'query', required: false, schema: { type: 'string' }, description: "one of the bundle's attributes (default toxicity)" };

export function openApiDocument(version: string): Record<string, unknown> {
  return {
    openapi: '3.0.3',
    info: { title: 'ToxScope', version, description: 'Multilingual toxicity classification from Qwen3 + sparse autoencoder features.' },
    components: { securitySchemes: { admin: { type: 'http', scheme: 'bearer' } } },
    paths: {
      '/v1/classify': { post: { summary: 'Classify texts', requestBody: body(s.ClassifyRequest), responses: { 200: ok(s.ClassifyResponse), ...common } } },
      '/v1alpha1/comments:analyze': {
        post: { summary: 'Perspective API compatible (TOXICITY)', requestBody: body(s.AnalyzeCommentRequest), responses: { 200: ok(s.AnalyzeCommentResponse), 400: err('invalid request or unsupported attribute'), ...common } },
      },
      '/v1/moderations': {
        post: { summary: 'OpenAI moderation compatible (toxicity under harassment and hate)', requestBody: body(s.ModerationRequest), responses: { 200: ok(s.ModerationResponse), 400: err('invalid request'), ...common } },
      },
      '/v1/feedback': { post: { summary: 'Moderator labels for predictions', requestBody: body(s.FeedbackRequest), responses: { 202: ok(s.FeedbackResponse, 'accepted'), ...common } } },
      '/healthz': { get: { summary: 'Process alive', responses: { 200: { description: 'alive (toxscope consume: with the queue connection state)' }, 503: err('the engine died, or (toxscope consume) the NATS connection closed for good') } } },
      '/readyz': { get: { summary: 'Bundle loaded and warmed up (toxscope consume: and consuming)', responses: { 200: { description: 'ready' }, 503: err('starting or draining, or (toxscope consume) the NATS connection lost or the durable consumer missing') } } },
      '/info': { get: { summary: 'Model, SAE, head, limits, execution provider', responses: { 200: { description: 'OK' } } } },
      '/metrics': { get: { summary: 'Prometheus metrics', responses: { 200: { description: 'text exposition format' } } } },
      '/admin/thresholds': {
        get: { security: [{ admin: [] }], parameters: [attributeParam], responses: { 200: ok(s.ThresholdsResponse), ...admin, 422: err('unknown attribute') } },
        put: { security: [{ admin: [] }], requestBody: body(s.ThresholdsUpdate), responses: { 200: ok(s.ThresholdsResponse), ...admin, 422: err('invalid thresholds'), 503: err('audit log unavailable') } },
      },
      '/admin/reload': {
        post: { security: [{ admin: [] }], requestBody: { required: false, content: json(s.ReloadRequest, 'input') }, responses: { 200: { description: 'swapped' }, ...admin, 409: err('a reload is in progress'), 422: err('bundle refused; the old one keeps serving') } },
      },
      '/admin/audit': { get: { security: [{ admin: [] }], parameters: [attributeParam], responses: { 200: { description: 'threshold changes (with their attribute) and reloads, newest first' }, ...admin } } },
      '/admin/drift': { get: { security: [{ admin: [] }], parameters: [attributeParam], responses: { 200: { description: "one attribute's per-language F1 and drift" }, ...admin, 422: err('unknown attribute, language or window') } } },
    },
  };
}
