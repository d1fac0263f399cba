/**
 * POST /v1/moderations: OpenAI moderation compatible, so the official `openai` SDK works with only a new
 * base URL. Mapping: the bundle's `openai_categories` names, per OpenAI category, the attribute whose calibrated
 * probability it carries (default: harassment <- toxicity, hate <- identity_attack when the bundle has it, else
 * toxicity); categories.<c> is that attribute's decision (score >= its threshold for the language) and `flagged`
 * is true when any mapped category is. Every other category is unscored: false with score 0 (README lists them).
 * Image inputs are refused (400).
 */
import { randomUUID } from 'node:crypto';
import { Hono } from 'hono';
import type { z } from 'zod';
import { validationError } from '../../errors.js';
import type { ServiceDeps } from '../../service/deps.js';
import { classifyTexts } from '../../service/classify.js';
import { moderationPredictionIds } from '../../service/feedback.js';
import { admitted, speaks } from '../middleware.js';
import { setScoreHeaders } from '../score-headers.js';
import { ModerationRequest, type ModerationResponse, OPENAI_CATEGORIES } from '../schemas.js';
import { jsonBody, valid } from '../validate.js';

export const MODERATION_MODEL = 'toxscope-toxicity';

function inputTexts(input: z.infer<typeof ModerationRequest>['input']): string[] {
  if (typeof input === 'string') return [input];
  return input.map((x, i) => {
    if (typeof x === 'string') return x;
    if (x.type === 'text') return x.text;
    throw validationError(`input[${i}]: image inputs are not supported; send text`);
  });
}

export function moderationRoutes(deps: ServiceDeps): Hono {
  const app = new Hono();
  app.post('/moderations', speaks('openai', (m) => m.replace(/\btexts\[(\d+)\]/g, 'input[$1]')), admitted(deps), jsonBody(), valid(ModerationRequest), async (c) => {
    const body = c.req.valid('json');
    // a single string is `input` itself to the caller
    if (typeof body.input === 'string') c.set('renameFields', (m) => m.replace(/\btexts\[0\]/g, 'input'));
    const texts = inputTexts(body.input);
    if (texts.length === 0) throw validationError('input must hold at least one text');
    // the response id names its predictions: POST /v1/feedback takes {"id": <modr id>, "index": i}
    const id = `modr-${randomUUID().replace(/-/g, '')}`;
    const predictionIds = moderationPredictionIds(id, texts.length);
    const mapping = deps.host.current().classifier.openaiCategories;
    const { out, info } = await classifyTexts(deps, { texts, attributes: [...new Set(Object.values(mapping))], signal: c.req.raw.signal, requestId: c.get('requestId'), predictionIds });
    setScoreHeaders(c, out, info);
    const response: z.infer<typeof ModerationResponse> = {
      id,
      model: body.model ?? MODERATION_MODEL,
      results: out.results.map((r) => {
        const categories: Record<string, boolean> = {};
        const category_scores: Record<string, number> = {};
        const category_applied_input_types: Record<string, string[]> = {};
        for (const k of OPENAI_CATEGORIES) {
          const a = mapping[k] === undefined ? undefined : r.attributes[mapping[k]];
          categories[k] = a?.toxic ?? false;
          category_scores[k] = a?.score ?? 0;
          category_applied_input_types[k] = a ? ['text'] : [];
        }
        return { flagged: Object.values(categories).some(Boolean), categories, category_scores, category_applied_input_types };
      }),
    };
    return c.json(response);
  });
  return app;
}
