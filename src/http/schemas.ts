/**
 * Request schemas (they validate every body) and response schemas (they document answers), all in zod;
 * GET /openapi.json is generated from these same objects (src/http/openapi.ts).
 *
 * Shapes only: size limits (texts per request, characters, tokens) are the classifier's, answered with 413.
 */
import { z } from 'zod';
import { LANGUAGE_TAG } from '../util/language-tag.js';

/**
 * A string that is stored in the database as given (feedback ids and sources, audit actors and reasons):
 * PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8, so both are refused here
 * rather than failing (or being dropped) when the row is written.
 */
export const StoredString = z
  .string()
  .refine((s) => !s.includes('\0'), 'must not contain NUL (U+0000) characters')
  .refine((s) => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s), 'must be valid UTF-16 (no lone surrogates)');

export const LanguageCode = z
  .string()
  .regex(LANGUAGE_TAG, 'expected an ISO 639 language code such as "en" or "pt-BR"')
  .describe('ISO 639-1/639-3 code or BCP-47 tag; only the primary subtag is used');

/** An attribute's name as bundles and /v1/classify spell it (toxicity, insult, identity_attack, ...). */
export const AttributeName = z
  .string()
  .regex(/^[a-z][a-z0-9_]{0,63}$/, 'expected an attribute name such as "toxicity" or "identity_attack" (lower case)')
  .describe("one of the bundle's attributes (GET /info lists them); absent: toxicity");

// ---------------------------------------------------------------- POST /v1/classify
export const ClassifyRequest = z
  .object({
    texts: z.array(z.string()).min(1, 'texts must hold at least one text').describe('texts to classify'),
    language: z
      .union([LanguageCode, z.array(LanguageCode.nullable())])
      .optional()
      .describe('one code for all texts, or one per text (null: identify); absent: identified per text'),
    explain: z.boolean().optional().describe('return the top contributing SAE features and where they fired'),
    top_features: z.number().int().min(1).max(50).optional().describe('features explained per text (default 5)'),
    attributes: z
      .array(z.string().min(1).max(64))
      .min(1, 'attributes must name at least one attribute')
      .optional()
      .describe("attributes to score (toxicity is always scored); absent: every attribute of the bundle (GET /info lists them)"),
  })
  .strict();

const Span = z.object({ start: z.number().int(), end: z.number().int() }).describe('[start, end) in UTF-16 code units of the text');

export const LanguageInfo = z.object({
  code: z.string().describe("the language used; 'und' when it could not be identified"),
  source: z.enum(['hint', 'detected', 'fallback']),
  confidence: z.number().optional().describe('identifier probability (detected and fallback)'),
  thresholds: z.string().describe("whose calibration/threshold applied: the language's own, or 'pooled'"),
});

export const ClassifyResponse = z.object({
  request_id: z.string(),
  bundle_version: z.string(),
  synthetic_backbone: z.literal(true).optional().describe('present when the bundle runs a synthetic backbone (the demo): its scores measure the pipeline, not Qwen3 features'),
  notice: z.string().optional(),
  results: z.array(
    z.object({
      id: z.string().describe('prediction id, for POST /v1/feedback'),
      score: z.number().describe('calibrated probability of toxicity'),
      toxic: z.boolean().describe('score >= threshold'),
      threshold: z.number(),
      language: LanguageInfo,
      tokens: z.number().int(),
      windows: z.number().int().describe('forward-pass windows the text was split into'),
      span: Span.describe('the sentence that drove the toxicity score (the whole text when the whole text did)'),
      attributes: z
        .record(
          z.string(),
          z.object({
            score: z.number().describe('calibrated probability'),
            toxic: z.boolean().describe('score >= threshold'),
            threshold: z.number(),
            thresholds: z.string().describe("whose threshold applied: the language's own, or 'pooled'"),
            span: Span.describe('the sentence that drove this score'),
          }),
        )
        .describe('every scored attribute, toxicity included'),
      features: z
        .array(
          z.object({
            id: z.number().int(),
            contribution: z.number(),
            firing_rate: z.number(),
            spans: z.array(Span),
            label: z.string().optional().describe("what the feature fires on in the training data, e.g. 'fires on \"idiot\", \"moron\" (en)'"),
            top_tokens: z.array(z.string()).optional().describe('its top activating training tokens, strongest first'),
            snippets: z.array(z.string()).optional().describe('its top activating training contexts, the token in [brackets] (only where the bundle may keep text)'),
          }),
        )
        .optional()
        .describe('with explain: top features (of the sentence that drove the toxicity score) by |contribution to the logit|'),
    }),
  ),
  timings: z.object({ tokenize_ms: z.number(), queue_ms: z.number(), inference_ms: z.number(), total_ms: z.number() }),
});

// ---------------------------------------------------------------- POST /v1alpha1/comments:analyze (Perspective)
/** Perspective attribute names a bundle can serve: its attributes in upper case (TOXICITY, INSULT, IDENTITY_ATTACK, ...). */
const ScoreType = z.enum(['SCORE_TYPE_UNSPECIFIED', 'PROBABILITY', 'STD_DEV_SCORE', 'PERCENTILE', 'RAW']);

/**
 * Google's JSON mapping of protobuf accepts each field under its proto name (snake_case) as well as its JSON name
 * (lowerCamelCase), and Perspective's own client examples send `requested_attributes`, `span_annotations`, ...
 * Keys are camel-cased before validation; upper-case names such as SEVERE_TOXICITY are left alone.
 */
function camelizeKeys(v: unknown, depth = 0): unknown {
  // bodies are at most 32 levels deep (src/http/validate.ts); deeper values are left as they are, never recursed into
  if (depth > 64) return v;
  if (Array.isArray(v)) return v.map((x) => camelizeKeys(x, depth + 1));
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()), camelizeKeys(x, depth + 1)]));
}

export const AnalyzeCommentRequest = z.preprocess((v) => camelizeKeys(v), z
  .object({
    comment: z.object({ text: z.string(), type: z.enum(['TEXT_TYPE_UNSPECIFIED', 'PLAIN_TEXT', 'HTML']).optional() }).loose(),
    requestedAttributes: z
      .record(z.string(), z.object({ scoreType: ScoreType.optional(), scoreThreshold: z.number().min(0).max(1).optional() }).loose())
      .refine((r) => Object.keys(r).length > 0, 'at least one attribute must be requested'),
    languages: z.array(LanguageCode).optional(),
    doNotStore: z.boolean().optional(),
    spanAnnotations: z.boolean().optional(),
    clientToken: z.string().optional(),
    sessionId: z.string().optional(),
    communityId: z.string().optional(),
    context: z.unknown().optional(),
    dropUnsupportedAttributes: z.boolean().optional(),
  })
  .loose());

const PerspectiveScore = z.object({ value: z.number(), type: z.literal('PROBABILITY') });
export const AnalyzeCommentResponse = z.object({
  attributeScores: z.record(
    z.string(),
    z.object({
      spanScores: z.array(z.object({ begin: z.number().int(), end: z.number().int(), score: PerspectiveScore })),
      summaryScore: PerspectiveScore,
    }),
  ),
  languages: z.array(z.string()),
  detectedLanguages: z.array(z.string()).optional(),
  clientToken: z.string().optional(),
});

// ---------------------------------------------------------------- POST /v1alpha1/comments:suggestscore (Perspective)
/** Perspective's SuggestCommentScoreRequest: a moderator's score for a comment becomes feedback. */
export const SuggestCommentScoreRequest = z.preprocess((v) => camelizeKeys(v), z
  .object({
    comment: z.object({ text: z.string() }).loose(),
    attributeScores: z
      .record(z.string(), z.object({ summaryScore: z.object({ value: z.number().min(0).max(1) }).loose() }).loose())
      .refine((r) => Object.keys(r).length > 0, 'must hold at least one attribute summaryScore (TOXICITY, or another attribute this service scores)'),
    languages: z.array(LanguageCode).optional(),
    clientToken: z.string().optional(),
    sessionId: z.string().optional(),
    communityId: z.string().optional(),
    context: z.unknown().optional(),
  })
  .loose());

export const SuggestCommentScoreResponse = z.object({
  detectedLanguages: z.array(z.string()).optional(),
  requestedLanguages: z.array(z.string()).optional(),
  clientToken: z.string().optional(),
});

// ---------------------------------------------------------------- POST /v1/moderations (OpenAI)
export const OPENAI_CATEGORIES = [
  'harassment',
  'harassment/threatening',
  'hate',
  'hate/threatening',
  'illicit',
  'illicit/violent',
  'self-harm',
  'self-harm/instructions',
  'self-harm/intent',
  'sexual',
  'sexual/minors',
  'violence',
  'violence/graphic',
] as const;
/** Which attribute each category carries is the bundle's mapping (Classifier.openaiCategories); the rest are unscored. */

const TextPart = z.object({ type: z.literal('text'), text: z.string() });
const ImagePart = z.object({ type: z.literal('image_url'), image_url: z.unknown() });
export const ModerationRequest = z
  .object({
    input: z.union([z.string(), z.array(z.string()), z.array(z.union([TextPart, ImagePart]))]),
    model: z.string().optional(),
  })
  .loose();

export const ModerationResponse = z.object({
  id: z.string(),
  model: z.string(),
  results: z.array(
    z.object({
      flagged: z.boolean(),
      categories: z.record(z.string(), z.boolean()),
      category_scores: z.record(z.string(), z.number()),
      category_applied_input_types: z.record(z.string(), z.array(z.string())),
    }),
  ),
});

// ---------------------------------------------------------------- POST /v1/feedback
export const FeedbackRequest = z
  .object({
    items: z
      .array(
        z
          .object({
            id: StoredString.min(1).max(200).describe('prediction id from /v1/classify or a queue result, or the id of an OpenAI moderation response (modr-...)'),
            index: z.number().int().min(0).max(100_000).optional().describe('with a moderation id: which of its results (default 0)'),
            label: z.union([z.literal(0), z.literal(1)]).describe('1 = toxic (the attribute applies)'),
            attribute: AttributeName.optional().describe("which of the bundle's attributes the label is for (default toxicity)"),
            category: z.string().min(1).max(64).optional().describe("instead of attribute: an OpenAI moderation category (hate, harassment, ...): the attribute the bundle maps it to"),
          })
          .strict(),
      )
      .min(1, 'items must hold at least one item'),
    source: StoredString.min(1).max(100).optional().describe("who labeled (default 'api')"),
  })
  .strict();

export const FeedbackResponse = z.object({
  items: z.array(z.object({ id: z.string(), attribute: z.string(), status: z.enum(['stored', 'updated', 'unknown_id']), note: z.string().optional() })),
});

// ---------------------------------------------------------------- /admin
export const ThresholdsResponse = z.object({
  bundle_version: z.string(),
  attribute: z.string().describe('the attribute whose thresholds these are (?attribute=, default toxicity)'),
  attributes: z.array(z.string()).describe('every attribute the bundle scores, each with its own thresholds'),
  pooled: z.number(),
  per_language: z.record(z.string(), z.number()),
  sources: z
    .record(z.string(), z.enum(['bundle', 'override', 'removed']))
    .describe("'pooled' and every language of the bundle or the overrides: 'bundle' = the bundle's trained value, 'override' = set by an operator, 'removed' = the bundle's own threshold removed (falls back to pooled)"),
  bundle: z.object({ pooled: z.number(), per_language: z.record(z.string(), z.number()) }).describe("the bundle's trained thresholds"),
});

const Probability = z.number().min(0, 'a threshold is a probability in [0, 1]').max(1, 'a threshold is a probability in [0, 1]');
export const ThresholdsUpdate = z
  .object({
    thresholds: z
      .record(z.union([z.literal('pooled'), LanguageCode]), z.union([Probability, z.null(), z.literal('bundle')]))
      .refine((t) => Object.keys(t).length > 0, 'give at least one threshold')
      .describe("'pooled' or a language code -> a probability; null removes a language's own threshold (falls back to pooled); \"bundle\" reverts to the bundle's trained value"),
    attribute: AttributeName.optional().describe("the attribute whose thresholds change (default toxicity); GET /admin/thresholds?attribute= shows them"),
    actor: StoredString.min(1).max(200).optional().describe('who makes the change (audit)'),
    reason: StoredString.max(1000).optional(),
  })
  .strict();

export const PrevalenceUpdate = z
  .object({
    prevalence: z
      .record(z.union([z.literal('pooled'), LanguageCode]), z.number().gt(0, 'a prevalence is a share strictly between 0 and 1').lt(1, 'a prevalence is a share strictly between 0 and 1').nullable())
      .refine((t) => Object.keys(t).length > 0, 'give at least one prevalence')
      .describe("'pooled' or a language code -> the toxic share of your traffic; null removes a language's own (it follows pooled)"),
    attribute: AttributeName.optional().describe('the attribute whose prevalence this is (default toxicity)'),
    actor: z.string().min(1).max(200).optional(),
    reason: z.string().max(1000).optional(),
  })
  .strict();

export const ReloadRequest = z
  .object({
    path: z.string().min(1).optional().describe('bundle directory; absent: the configured one'),
    actor: StoredString.min(1).max(200).optional().describe('who reloads (audit)'),
    reason: StoredString.max(1000).optional(),
  })
  .strict();

export const ErrorResponse = z.object({
  error: z.object({ kind: z.string(), message: z.string(), code: z.number().int(), status: z.string() }),
});
