/**
 * POST /v1alpha1/comments:analyze: Google Perspective API compatible, for every attribute the bundle scores
 * (TOXICITY always; INSULT, IDENTITY_ATTACK, PROFANITY, ... as the bundle has them: its attributes in upper case).
 *
 * Request: comment.text, requestedAttributes (each one the bundle has is served; the others are left out of the
 * answer; only when none of them is available is the request refused with a 400, as Perspective answers an unknown
 * attribute, or answered with no scores under dropUnsupportedAttributes), languages (the first decides
 * thresholds), doNotStore, spanAnnotations, clientToken (echoed). Response: attributeScores.<NAME>.summaryScore
 * {value, type: PROBABILITY} and spanScores (one whole-text span; one per sentence with spanAnnotations),
 * languages, detectedLanguages. scoreThreshold omits an attribute when its score is below it, as Perspective does.
 */
import { Hono } from 'hono';
import type { z } from 'zod';
import { validationError } from '../../errors.js';
import type { ServiceDeps } from '../../service/deps.js';
import { classifyTexts } from '../../service/classify.js';
import { suggestScore } from '../../service/feedback.js';
import { admitted, speaks } from '../middleware.js';
import { setScoreHeaders } from '../score-headers.js';
import { AnalyzeCommentRequest, type AnalyzeCommentResponse, SuggestCommentScoreRequest, type SuggestCommentScoreResponse } from '../schemas.js';
import { attributeOfPerspective, perspectiveName } from '../../head/attributes.js';
import { jsonBody, valid } from '../validate.js';

const segmenter = new Intl.Segmenter('und', { granularity: 'sentence' });

/** Sentences of `text` as [begin, end) without surrounding whitespace; empty ones left out. */
function sentences(text: string): [number, number][] {
  const out: [number, number][] = [];
  for (const { segment, index } of segmenter.segment(text)) {
    const lead = segment.length - segment.trimStart().length;
    const body = segment.trim();
    if (body.length > 0) out.push([index + lead, index + lead + body.length]);
  }
  return out;
}

/** Merge consecutive [begin, end) spans into at most `maxGroups` contiguous groups of about equal count. */
export function groupSpans(spans: [number, number][], maxGroups: number): [number, number][] {
  if (spans.length <= maxGroups) return spans;
  if (maxGroups < 1) return [];
  const out: [number, number][] = [];
  for (let g = 0; g < maxGroups; g++) {
    const from = Math.floor((g * spans.length) / maxGroups);
    const to = Math.floor(((g + 1) * spans.length) / maxGroups);
    out.push([spans[from][0], spans[to - 1][1]]);
  }
  return out;
}

/** The core's names in Perspective's terms: texts[i] (the comment or one of its sentence groups) -> comment.text. */
function perspectiveFields(message: string): string {
  return message.replace(/\btexts\[\d+\]/g, 'comment.text').replace(/^language: /, 'languages: ');
}

export function perspectiveRoutes(deps: ServiceDeps): Hono {
  const app = new Hono();
  // the comment and its sentence groups are texts[0..n] to the core: all of them are comment.text to the caller
  app.post('/comments:analyze', speaks('perspective', perspectiveFields), admitted(deps), jsonBody(), valid(AnalyzeCommentRequest), async (c) => {
    const body = c.req.valid('json');
    const text = body.comment.text;
    if (text.trim() === '') throw validationError('comment.text must be non-empty');

    const supported = deps.host.current().classifier.attributeNames.map(perspectiveName);
    const requested = Object.entries(body.requestedAttributes);
    const served = requested.filter(([name]) => supported.includes(name));
    if (served.length === 0 && !body.dropUnsupportedAttributes) {
      const unknown = requested.map(([n]) => n);
      throw validationError(`requestedAttributes: ${unknown.join(', ')} ${unknown.length > 1 ? 'are' : 'is'} not supported by this service (supported: ${supported.join(', ')})`);
    }
    for (const [name, spec] of served)
      if (spec.scoreType && !['PROBABILITY', 'SCORE_TYPE_UNSPECIFIED'].includes(spec.scoreType))
        throw validationError(`requestedAttributes.${name}.scoreType: only PROBABILITY is supported, got ${spec.scoreType}`);

    // one comment is 1 + (sentence groups) texts: group consecutive sentences so it never exceeds the per-request limit
    const spans = body.spanAnnotations ? groupSpans(sentences(text), deps.config.limits.maxTextsPerRequest - 1) : [];
    const perSentence = spans.length > 1;
    const texts = perSentence ? [text, ...spans.map(([b, e]) => text.slice(b, e))] : [text];
    const language = body.languages?.[0];
    // only the comment is a prediction; its sentence groups are scored for spanScores
    const { out, info } = await classifyTexts(deps, {
      texts, language, attributes: served.map(([name]) => attributeOfPerspective(name)), signal: c.req.raw.signal, requestId: c.get('requestId'), recorded: 1, store: !body.doNotStore,
    });
    setScoreHeaders(c, out, info);

    const whole = out.results[0];
    const score = (value: number) => ({ value, type: 'PROBABILITY' as const });
    const response: z.infer<typeof AnalyzeCommentResponse> = {
      attributeScores: {},
      languages: body.languages ?? [whole.language.code],
      ...(body.languages === undefined && { detectedLanguages: whole.language.source === 'detected' ? [whole.language.code] : [] }),
      ...(body.clientToken !== undefined && { clientToken: body.clientToken }),
    };
    for (const [name, spec] of served) {
      const attribute = attributeOfPerspective(name);
      const summary = whole.attributes[attribute].score;
      if (spec.scoreThreshold !== undefined && summary < spec.scoreThreshold) continue;
      response.attributeScores[name] = {
        spanScores: perSentence
          ? spans.map(([begin, end], i) => ({ begin, end, score: score(out.results[i + 1].attributes[attribute].score) }))
          : [{ begin: 0, end: text.length, score: score(summary) }],
        summaryScore: score(summary),
      };
    }
    return c.json(response);
  });
  /**
   * A moderator's score for a comment (Perspective's comments:suggestscore) as feedback for the prediction of
   * the same text (src/service/feedback.ts suggestScore: sha256 match within TOXSCOPE_FEEDBACK_MATCH_HOURS, the
   * newest unlabeled prediction first). Every attribute in attributeScores labels the bundle's attribute of that
   * name; one the bundle does not score is a 400 (nothing stored). Answered in Perspective's shape; what happened is
   * in X-Toxscope-Feedback (stored, updated, unmatched), X-Toxscope-Feedback-Attributes (per attribute) and
   * X-Toxscope-Prediction-Id, since Perspective's response has no place for it.
   */
  app.post('/comments:suggestscore', speaks('perspective', perspectiveFields), jsonBody(), valid(SuggestCommentScoreRequest), async (c) => {
    const body = c.req.valid('json');
    if (body.comment.text.trim() === '') throw validationError('comment.text must be non-empty');
    // each attribute it scores labels the bundle's attribute of that name (TOXICITY -> toxicity, INSULT -> insult, ...)
    const values: Record<string, number> = {};
    for (const [name, s] of Object.entries(body.attributeScores)) values[attributeOfPerspective(name)] = s.summaryScore.value;
    const supported = deps.host.current().classifier.attributeNames;
    const unknown = Object.keys(values).filter((a) => !supported.includes(a));
    if (unknown.length > 0)
      throw validationError(`attributeScores: ${unknown.map(perspectiveName).join(', ')} ${unknown.length > 1 ? 'are' : 'is'} not supported by this service (supported: ${supported.map(perspectiveName).join(', ')})`);
    const outcome = await suggestScore(deps, { text: body.comment.text, values });
    c.header('X-Toxscope-Feedback', outcome.status);
    if (outcome.attributes) c.header('X-Toxscope-Feedback-Attributes', Object.entries(outcome.attributes).map(([a, s]) => `${perspectiveName(a)}=${s}`).join(', '));
    if (outcome.predictionId) c.header('X-Toxscope-Prediction-Id', outcome.predictionId);
    if (outcome.candidates > 1) c.header('X-Toxscope-Feedback-Candidates', String(outcome.candidates));
    const response: z.infer<typeof SuggestCommentScoreResponse> = {
      ...(body.languages !== undefined && { requestedLanguages: body.languages }),
      ...(body.clientToken !== undefined && { clientToken: body.clientToken }),
    };
    return c.json(response);
  });
  return app;
}
