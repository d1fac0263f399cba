/**
 * The queue's wire format: one JSON request per message, one JSON result per request, one JSON dead letter per
 * message that cannot be classified. Shapes only; the consumer (src/queue/consumer.ts) does the work.
 *
 *   request      {"text": "..."} or {"texts": ["...", ...]}, optional "id" (the caller's, an idempotency key),
 *                "language" (one code, or one per text with null = identify), "attributes" (as /v1/classify's:
 *                toxicity always, absent = every attribute of the bundle), "reply_to"
 *   result       {"id", "stream", "stream_seq", "bundle_version", "results": [{"id" (prediction), "score", ...,
 *                "attributes": {name: {score, toxic, threshold, thresholds, span}}}]}
 *   dead letter  {"error": {"kind", "message"}, "stream", "stream_seq", "subject", "deliveries", "data"}
 *
 * Prediction ids are derived from the message, never random, so a redelivered message stores nothing twice:
 * from the caller's id when given (`q:<id>:<index>`), else from the stream and its sequence number
 * (`nats:<stream>:<seq>:<index>`).
 */
import { z } from 'zod';
import { validationError } from '../errors.js';
import { LANGUAGE_TAG } from '../util/language-tag.js';

const LanguageCode = z.string().regex(LANGUAGE_TAG, 'expected an ISO 639 language code such as "en" or "pt-BR"');

/** The caller's id (an idempotency key): printable ASCII, so the prediction ids derived from it stay readable. */
const CallerId = z.string().min(1).max(128).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces');

export const QueueRequestSchema = z
  .object({
    id: CallerId.optional(),
    text: z.string().optional(),
    texts: z.array(z.string()).min(1, 'texts must hold at least one text').optional(),
    language: z.union([LanguageCode, z.array(LanguageCode.nullable())]).optional(),
    /**
     * attributes to score, as /v1/classify's `attributes`: lower-case names (toxicity, insult, identity_attack,
     * ...); toxicity is always scored; absent: every attribute of the bundle; one the bundle does not score is
     * refused (dead-lettered) by the classifier, with the names it does score
     */
    attributes: z.array(z.string().min(1).max(64)).min(1, 'attributes must name at least one attribute').optional(),
    /** a core NATS subject the result is also published to (request/reply over the queue) */
    reply_to: z.string().min(1).max(256).regex(/^[^\s*>]+$/, 'a NATS subject without wildcards').optional(),
  })
  .strict()
  .refine((r) => (r.text === undefined) !== (r.texts === undefined), { message: 'give exactly one of "text" and "texts"' });

export type QueueRequest = z.infer<typeof QueueRequestSchema>;

export interface ParsedRequest {
  callerId: string | null;
  texts: string[];
  language?: string | (string | null)[];
  replyTo: string | null;
  /** absent: every attribute of the bundle */
  attributes?: string[];
}

/** Bytes of one message -> a request; a ToxScopeError('validation') saying what is wrong otherwise. */
export function parseQueueRequest(data: Uint8Array): ParsedRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch (e) {
    throw validationError(`the message is not UTF-8 JSON: ${(e as Error).message}`);
  }
  const r = QueueRequestSchema.safeParse(raw);
  if (!r.success) {
    const why = r.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
    throw validationError(`invalid request: ${why}`);
  }
  const m = r.data;
  const texts = m.texts ?? [m.text!];
  if (Array.isArray(m.language) && m.language.length !== texts.length)
    throw validationError(`language: ${m.language.length} codes for ${texts.length} texts (give one code, or one per text)`);
  return { callerId: m.id ?? null, texts, language: m.language, replyTo: m.reply_to ?? null, ...(m.attributes && { attributes: m.attributes }) };
}

/** Where a message sits in its stream: what its prediction ids are derived from when the caller gave none. */
export interface MessageOrigin {
  stream: string;
  streamSeq: number;
}

export function predictionIds(req: Pick<ParsedRequest, 'callerId' | 'texts'>, origin: MessageOrigin): string[] {
  const base = req.callerId !== null ? `q:${req.callerId}` : `nats:${origin.stream}:${origin.streamSeq}`;
  return req.texts.map((_, i) => `${base}:${i}`);
}

export interface QueueResult {
  id: string | null;
  stream: string;
  stream_seq: number;
  bundle_version: string;
  synthetic_backbone?: true;
  results: {
    id: string;
    score: number;
    toxic: boolean;
    threshold: number;
    language: { code: string; source: string; thresholds: string };
    /** every scored attribute, toxicity included (the shape of /v1/classify's `attributes`) */
    attributes: Record<string, { score: number; toxic: boolean; threshold: number; thresholds: string; span: { start: number; end: number } }>;
  }[];
}

export interface DeadLetter {
  error: { kind: string; message: string };
  stream: string;
  stream_seq: number;
  subject: string;
  deliveries: number;
  /** the message as received: UTF-8 text when it is, else base64 */
  data: string;
  encoding: 'utf8' | 'base64';
}

export function deadLetter(error: { kind: string; message: string }, m: { subject: string; data: Uint8Array; deliveries: number } & MessageOrigin): DeadLetter {
  let data: string;
  let encoding: DeadLetter['encoding'] = 'utf8';
  try {
    data = new TextDecoder('utf-8', { fatal: true }).decode(m.data);
  } catch {
    data = Buffer.from(m.data).toString('base64');
    encoding = 'base64';
  }
  return { error, stream: m.stream, stream_seq: m.streamSeq, subject: m.subject, deliveries: m.deliveries, data, encoding };
}
