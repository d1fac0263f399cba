/**
 * The classification pipeline, one request at a time, batched across requests:
 *
 *   texts --(limits, UTF-16 check, language hints)--> on the tokenizer worker (src/engine/text-worker.ts): normalised
 *         (NFKC, invisibles out, whitespace collapsed) --> tokens within the budget --> language (hint | fastText), char offsets
 *         --> windows of <= windowTokens (overlap) --> Batcher --> engine.runTopK (one forward pass per batch)
 *         --> owned codes stitched per text [1, n, k] --> firing rates (FeatureAccumulator)
 *         --> head.score(features, language) --> score, threshold, decision, explanation + char spans
 *
 * No HTTP here. The head is read once per request, so a threshold change (setHead) applies atomically to
 * requests that start after it.
 *
 * With a quarantine (src/engine/quarantine.ts): a text quarantined for crashing the engine is refused once
 * tokenized, before anything is queued; a death of the engine during a batch makes the texts in that batch
 * suspects, and a suspect runs in batches of its own until it is scored to the end.
 */
import { formatError, ToxScopeError, validationError } from '../errors.js';
import type { BatchingConfig, LimitsConfig } from '../config.js';
import type { Head } from '../head/head.js';
import type { TextFeatures } from '../head/text-features.js';
import type { FeatureLabels } from '../head/feature-labels.js';
import { defaultOpenAiCategories, TOXICITY } from '../head/attributes.js';
import type { Metrics } from '../metrics/metrics.js';
import { Batcher } from './batcher.js';
import { FeatureAccumulator } from './features.js';
import { languageHints, type LanguageTag, UNDETERMINED } from './language.js';
import type { Padding } from './padding.js';
import { tokenDigest, type EngineQuarantine } from './quarantine.js';
import { offsetPairs } from './text-prep.js';
import { windowsFrom } from './segments.js';
import type { TextPreparer } from './text-worker.js';
import type { TopKBatch } from './types.js';
import { featureSpans, planWindows, sliceRow, stitch, type TokenCodes } from './windows.js';

/** What the classifier needs from the forward engine (ForwardEngine satisfies it). */
export interface TopKRunner {
  runTopK(ids: number[][], padding?: Padding): Promise<TopKBatch>;
  close?(): Promise<void>;
  /** why the engine can no longer run (e.g. its worker thread died), or null */
  failure?(): string | null;
}

export interface ClassifierParts {
  engine: TopKRunner;
  /** normalising, language identification and tokenizing within the budget, off the event loop (TextWorker) */
  text: TextPreparer;
  /** the toxicity head */
  head: Head;
  /** heads of the bundle's other attributes (insult, identity_attack, ...), on the same features */
  attributes?: Readonly<Record<string, Head>>;
  /** what each feature fires on in the training data (explanations carry it) */
  featureLabels?: FeatureLabels | null;
  /** OpenAI moderation category -> the attribute whose score it carries (default: defaultOpenAiCategories) */
  openaiCategories?: Readonly<Record<string, string>>;
  /** the bundle's version, echoed in every response */
  version: string;
}

export interface ClassifierOptions {
  limits: LimitsConfig;
  batching: BatchingConfig;
  metrics?: Metrics;
  /** texts that crashed the engine (refused) and suspects (run alone); shared by every classifier of the process */
  quarantine?: EngineQuarantine;
}

export interface ClassifyInput {
  texts: readonly string[];
  /** one code for all texts, or one per text (null: identify) */
  language?: string | readonly (string | null)[];
  explain?: boolean;
  /** explained features per text (default 5) */
  topFeatures?: number;
  /** attributes to score besides toxicity (default: every attribute of the bundle); unknown ones are a 400 */
  attributes?: readonly string[];
  /** the client went away */
  signal?: AbortSignal;
  /** deadline instead of the configured request timeout (0 = none) */
  timeoutMs?: number;
}

export interface FeatureExplanation {
  /** SAE feature id */
  id: number;
  /** its share of the logit, summed over the head's parts (rate, log-count-idf, max activation) */
  contribution: number;
  /** tokens on which it fired / real tokens of the text */
  firingRate: number;
  /** [start, end) UTF-16 offsets of the original text where it fired */
  spans: [number, number][];
  /** a short name from its top activating training contexts ('fires on "idiot", ...'), when the bundle has labels */
  label?: string;
  /** its top activating tokens in the training data, strongest first */
  topTokens?: string[];
  /** its top activating training contexts, the token in [brackets] (only where the bundle may keep text) */
  snippets?: string[];
}

export interface AttributeResult {
  score: number;
  toxic: boolean;
  threshold: number;
  /** whose threshold decided: the language's own, or 'pooled' */
  thresholds: string;
  /** [start, end) UTF-16 offsets of the original text: the sentence that drove the score (the whole text when it did) */
  span: [number, number];
}

export interface TextResult {
  /** toxicity */
  score: number;
  toxic: boolean;
  threshold: number;
  /** [start, end) of the original text: the sentence that drove the toxicity score, or the whole text */
  span: [number, number];
  /** every scored attribute, toxicity included */
  attributes: Record<string, AttributeResult>;
  language: LanguageTag & {
    /** whose threshold decided: the language's own, or 'pooled' (unknown or unsupported language) */
    thresholds: string;
  };
  tokens: number;
  windows: number;
  explanation?: FeatureExplanation[];
}

export interface ClassifyOutput {
  results: TextResult[];
  version: string;
  timings: { tokenizeMs: number; queueMs: number; inferenceMs: number; totalMs: number };
}

export { TOXICITY };

/** One forward-pass row: a window of one text. */
interface WindowItem {
  ids: number[];
  /** first token of the window to count, relative to the window */
  ownFrom: number;
  /** a part of a text (src/engine/segments.ts) encoded alone, not one of its windows */
  part?: true;
  /** its text's tokenDigest (with a quarantine) */
  text?: string;
  /** its text is a suspect: the window shares a batch only with its own text's */
  alone?: true;
}

export class Classifier {
  readonly version: string;
  private currentHead: Head;
  private currentAttributes: Readonly<Record<string, Head>>;
  private readonly parts: ClassifierParts;
  private readonly limitsConfig: LimitsConfig;
  private readonly batchingTimeoutMs: number;
  private readonly metrics?: Metrics;
  private readonly quarantine?: EngineQuarantine;
  private readonly batcher: Batcher<WindowItem, TokenCodes>;
  private closing: Promise<void> | undefined;
  /** no new requests (draining or closing) */
  private stopping = false;
  /** requests between their start and the queue (tokenizing) */
  private readonly admitting = new Set<Promise<void>>();

  constructor(parts: ClassifierParts, { limits, batching, metrics, quarantine }: ClassifierOptions) {
    this.parts = parts;
    this.version = parts.version;
    this.currentHead = parts.head;
    this.currentAttributes = { ...(parts.attributes ?? {}) };
    this.limitsConfig = limits;
    this.batchingTimeoutMs = batching.requestTimeoutMs;
    this.metrics = metrics;
    this.quarantine = quarantine;
    this.batcher = new Batcher<WindowItem, TokenCodes>({
      process: (items) => this.forward(items),
      tokensOf: (w) => w.ids.length,
      maxBatchItems: batching.maxBatchTexts,
      maxBatchTokens: batching.maxBatchTokens,
      maxWaitMs: batching.maxWaitMs,
      capacity: batching.queueCapacity,
      // a window counts 1; a part (a sentence or 16-token window of a text, scored alone) its share of a window
      costOf: (w) => (w.part ? w.ids.length / limits.windowTokens : 1),
      timeoutMs: batching.requestTimeoutMs,
      // a long text takes turns with the other requests one window at a time: whoever arrives behind it waits for
      // at most one window's forward pass of it, not for all of them
      requestSliceTokens: limits.windowTokens,
      groupOf: (w) => (w.alone ? w.text : undefined),
      observer: metrics && {
        queueDepth: (n) => metrics.queueDepth.set(n),
        queueWait: (s) => metrics.queueDuration.observe(s),
        batch: ({ items, tokens, seconds }) => {
          metrics.batchSize.observe(items);
          metrics.batchTokens.observe(tokens);
          metrics.inferenceDuration.observe(seconds);
          metrics.tokens.inc(tokens);
        },
        rejected: (reason) => metrics.rejected.inc({ reason }),
      },
    });
  }

  /** the limits this classifier enforces (the bundle's window settings win over the configured ones) */
  get limits(): Readonly<LimitsConfig> {
    return this.limitsConfig;
  }

  get head(): Head {
    return this.currentHead;
  }

  /** The head as the bundle shipped it (its trained thresholds), whatever setHead has swapped in since. */
  get bundleHead(): Head {
    return this.parts.head;
  }

  /** OpenAI moderation category -> attribute (the bundle's mapping); categories not named are unscored. */
  get openaiCategories(): Readonly<Record<string, string>> {
    return this.parts.openaiCategories ?? defaultOpenAiCategories(Object.keys(this.parts.attributes ?? {}));
  }

  /** Names of the attributes this classifier scores: toxicity first, then the bundle's others, sorted. */
  get attributeNames(): string[] {
    return [TOXICITY, ...Object.keys(this.currentAttributes).sort()];
  }

  /** The head of an attribute (toxicity's is `head`). */
  attributeHead(name: string): Head | undefined {
    return name === TOXICITY ? this.currentHead : this.currentAttributes[name];
  }

  /** The head of an attribute as the bundle shipped it (toxicity's is `bundleHead`). */
  bundleAttributeHead(name: string): Head | undefined {
    return name === TOXICITY ? this.parts.head : this.parts.attributes?.[name];
  }

  /** Swap one attribute's head (toxicity: setHead). */
  setAttributeHead(name: string, head: Head): void {
    if (name === TOXICITY) this.currentHead = head;
    else if (name in this.currentAttributes) this.currentAttributes = { ...this.currentAttributes, [name]: head };
    else throw validationError(`unknown attribute ${name}`);
  }

  private attributeHeads(requested: readonly string[] | undefined): [string, Head][] {
    const all = this.currentAttributes;
    if (requested === undefined) return Object.keys(all).sort().map((n) => [n, all[n]]);
    const unknown = requested.filter((n) => n !== TOXICITY && !(n in all));
    if (unknown.length > 0) throw validationError(`unknown attribute${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}: this bundle scores ${this.attributeNames.join(', ')}`);
    return [...new Set(requested)].filter((n) => n !== TOXICITY).sort().map((n) => [n, all[n]]);
  }

  /** Swap the head (new thresholds): requests that already started keep the one they read. */
  setHead(head: Head): void {
    this.currentHead = head;
  }

  /** Why this classifier can no longer answer (its engine died), or null: readiness and liveness read it. */
  failure(): string | null {
    return this.parts.engine.failure?.() ?? null;
  }

  get queueDepth(): number {
    return this.batcher.depth;
  }

  /** Refuse at once (before reading the request) when `texts` more cannot fit the queue. */
  assertRoom(texts: number): void {
    this.batcher.assertRoom(texts);
  }

  async classify(input: ClassifyInput): Promise<ClassifyOutput> {
    const t0 = performance.now();
    const head = this.currentHead;
    const { texts } = input;
    const extra = this.attributeHeads(input.attributes); // unknown attributes: refused before any work
    if (this.stopping) throw new ToxScopeError('unavailable', 'the service is shutting down and accepts no new work');
    // until its windows are queued the request is being admitted: a drain waits for that (tokenizing yields)
    const timeoutMs = input.timeoutMs ?? this.batchingTimeoutMs;
    const admission = this.admit(input, t0, timeoutMs > 0 ? t0 + timeoutMs : undefined);
    const settled = admission.then(() => undefined, () => undefined);
    this.admitting.add(settled);
    void settled.then(() => this.admitting.delete(settled));
    const late = (e: unknown) => {
      // one deadline for the whole request: say which, whatever part of the work it cut short
      if (e instanceof ToxScopeError && e.kind === 'timeout') throw new ToxScopeError('timeout', `request not answered within ${timeoutMs} ms (its deadline)`, e.details, { cause: e });
      throw e;
    };
    const { submitted, encodings, tokenizeMs, windowCounts, owner, segmentOwner, suspects } = await admission.catch(late);
    const batched = await submitted.catch(late);
    if (suspects.length > 0) this.quarantine!.cleared(suspects);

    const perText: TokenCodes[][] = texts.map(() => []);
    const perSegment: (TokenCodes | undefined)[][] = encodings.map((e) => new Array(e.segments.length));
    batched.outputs.forEach((codes, i) => {
      if (i < owner.length) perText[owner[i]].push(codes);
      else perSegment[segmentOwner[i - owner.length][0]][segmentOwner[i - owner.length][1]] = codes;
    });
    // Features and scores on the event loop, in slices: a 16k-token text has ~250 sentence segments, each with
    // its own features and a score per attribute head (~100 ms in one go on two loaded cores); between steps the
    // loop serves other requests.
    const pause = slicer(RESULT_SLICE_MS);
    const results: TextResult[] = [];
    for (let i = 0; i < perText.length; i++) {
      const codes = stitch(perText[i]); // [1, n, k]
      const { offsets, segments } = encodings[i];
      const whole = new FeatureAccumulator();
      for (let from = 0; from < codes.seqLen; from += FEATURE_STEP_TOKENS) {
        whole.addRow(codes, 0, { from, to: from + FEATURE_STEP_TOKENS });
        await pause();
      }
      const features = whole.result();
      if (segments.length > 1) {
        // each segment as a text of its own (its own forward pass): it scores as it would alone
        features.segments = [];
        features.windowsFrom = windowsFrom(segments);
        for (const part of perSegment[i]) {
          features.segments.push(part ? new FeatureAccumulator().addRow(stitch([part]), 0).result() : EMPTY_FEATURES);
          await pause();
        }
      }
      const lang = encodings[i].language;
      const code = lang.code === UNDETERMINED ? undefined : lang.code;
      const span = (segment: number): [number, number] => {
        const r = segment < 0 ? { from: 0, to: offsets.length >> 1 } : segments[segment];
        let start = offsets[2 * r.from];
        const end = offsets[2 * (r.to - 1) + 1];
        while (start < end - 1 && /\s/u.test(texts[i][start])) start++; // a token's leading space is not the sentence's
        return [start, end];
      };
      const s = head.score(features, code);
      const attributes: Record<string, AttributeResult> = {
        [TOXICITY]: { score: s.probability, toxic: s.toxic, threshold: s.threshold, thresholds: s.languageUsed, span: span(s.segment) },
      };
      for (const [name, h] of extra) {
        await pause();
        const a = h.score(features, code);
        attributes[name] = { score: a.probability, toxic: a.toxic, threshold: a.threshold, thresholds: a.languageUsed, span: span(a.segment) };
      }
      const label = metricLanguage(lang, s.languageUsed, s.calibrationUsed);
      this.metrics?.predictions.inc({ language: label, label: s.toxic ? 'toxic' : 'non_toxic' });
      this.metrics?.scores.observe({ language: label }, s.probability);
      for (const [attribute, a] of Object.entries(attributes)) {
        this.metrics?.attributePredictions.inc({ attribute, language: label, label: a.toxic ? 'toxic' : 'non_toxic' });
        this.metrics?.attributeScores.observe({ attribute, language: label }, a.score);
      }
      const result: TextResult = {
        score: s.probability,
        toxic: s.toxic,
        threshold: s.threshold,
        span: span(s.segment),
        attributes,
        language: { ...lang, thresholds: s.languageUsed },
        tokens: features.nTokens,
        windows: windowCounts[i],
      };
      if (input.explain) {
        // the driving part's own codes (it was encoded alone): its features fired there, not necessarily in context
        const part = s.segment >= 0 ? perSegment[i][s.segment] : undefined;
        result.explanation = part
          ? await explain(s.contributions(Number.MAX_SAFE_INTEGER), stitch([part]), offsetPairs(encodings[i].segmentOffsets[s.segment]).slice(0, part.nTokens), input.topFeatures ?? 5, this.parts.featureLabels ?? null, pause)
          : await explain(s.contributions(Number.MAX_SAFE_INTEGER), codes, offsetPairs(offsets), input.topFeatures ?? 5, this.parts.featureLabels ?? null, pause);
      }
      results.push(result);
      await pause();
    }
    return {
      results,
      version: this.version,
      timings: { tokenizeMs, queueMs: batched.queueMs, inferenceMs: batched.inferenceMs, totalMs: performance.now() - t0 },
    };
  }

  /** Cheap checks here; texts, languages and tokens within the budget on the tokenizer worker; windows, then into the queue. */
  private async admit(input: ClassifyInput, t0: number, deadline: number | undefined) {
    const { texts } = input;
    this.checkTexts(texts);
    this.batcher.assertRoom(texts.length); // every text is at least one window: refuse before tokenizing
    const hints = languageHints(texts.length, input.language);
    // off the event loop, in turns shared fairly with other requests, refused as soon as the running count passes
    // the budget (never tokenized whole); token offsets point into the caller's original strings
    const encodings = await this.parts.text.prepare({ texts, hints, maxTokens: this.limitsConfig.maxTokensPerRequest, signal: input.signal, deadline });
    const tokenizeMs = performance.now() - t0;
    this.metrics?.tokenizeDuration.observe(tokenizeMs / 1000);
    const digests = this.quarantine ? encodings.map((e) => tokenDigest(e.ids)) : [];
    const suspects = digests.filter((d) => this.quarantine!.isSuspect(d));
    this.refuseQuarantined(digests);

    // Windows of every text, in order; owner[i] = the text of window i. Then each text's segments, each encoded
    // alone (src/engine/segments.ts): segmentOwner[j] = [text, segment] of item windows.length + j.
    const items: WindowItem[] = [];
    const owner: number[] = [];
    const windowCounts = encodings.map((e, i) => {
      const ws = planWindows(e.ids.length, this.limitsConfig.windowTokens, this.limitsConfig.windowOverlap);
      for (const w of ws) {
        items.push({ ids: e.ids.slice(w.start, w.end), ownFrom: w.own - w.start, ...this.suspicion(digests[i], suspects) });
        owner.push(i);
      }
      return ws.length;
    });
    const segmentOwner: [number, number][] = [];
    encodings.forEach((e, i) => e.segmentIds.forEach((ids, j) => {
      if (ids.length === 0) return;
      items.push({ ids: ids.slice(0, this.limitsConfig.windowTokens), ownFrom: 0, part: true, ...this.suspicion(digests[i], suspects) });
      segmentOwner.push([i, j]);
    }));
    const left = deadline === undefined ? 0 : Math.max(1, deadline - performance.now());
    const submitted = this.batcher.submit(items, { signal: input.signal, timeoutMs: left }); // queued now
    submitted.catch(() => undefined); // the caller awaits it: no unhandled rejection meanwhile
    return { submitted, encodings, tokenizeMs, windowCounts, owner, segmentOwner, suspects };
  }

  /** A request holding a quarantined text is refused whole: its texts never reach the queue. */
  private refuseQuarantined(digests: readonly string[]): void {
    for (let i = 0; i < digests.length; i++) {
      const deaths = this.quarantine!.quarantinedAt(digests[i]);
      if (deaths === 0) continue;
      this.quarantine!.refused();
      throw new ToxScopeError('quarantined', `texts[${i}] crashed the engine repeatedly (it was being scored at ${deaths} deaths of the engine): it is quarantined and will not be retried`, {
        index: i,
        deaths,
      });
    }
  }

  /** What a window of a text carries for the quarantine: its text, and whether it must run alone. */
  private suspicion(digest: string | undefined, suspects: readonly string[]): Pick<WindowItem, 'text' | 'alone'> {
    if (digest === undefined) return {};
    return suspects.includes(digest) ? { text: digest, alone: true } : { text: digest };
  }

  /** One short text through the whole pipeline, with no deadline: the warm-up and deep readiness check. */
  /**
   * One request through the whole pipeline before the bundle serves. A bundle whose engine yields non-finite
   * codes (NaN or infinite weights in the model or SAE: every feature then looks silent and every text scores
   * the head's bias) or whose score is not a finite probability is refused here, as a 'format' error.
   */
  async warmUp(): Promise<void> {
    let score: number;
    try {
      const r = await this.classify({ texts: [WARM_UP_TEXT], language: 'en', timeoutMs: 0 });
      score = r.results[0].score;
    } catch (e) {
      if (e instanceof ToxScopeError && e.details?.nonFinite) throw formatError(`warm-up refused the bundle: ${e.message}`);
      throw e;
    }
    if (!(Number.isFinite(score) && score >= 0 && score <= 1)) throw formatError(`warm-up refused the bundle: it scored the warm-up text ${score}, not a probability`);
  }

  /** Finish everything queued, then release the engine (once, however often it is called). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.drain();
      await Promise.all([this.parts.engine.close?.(), this.parts.text.close()]);
    })();
    return this.closing;
  }

  /** Stop taking requests and finish the queued ones (graceful shutdown); the engine stays open. */
  async drain(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.admitting]); // requests being tokenized reach the queue first
    await this.batcher.drain();
  }

  private checkTexts(texts: readonly string[]): void {
    const { maxTextsPerRequest, maxCharsPerText } = this.limitsConfig;
    if (!Array.isArray(texts) || texts.length === 0) throw validationError('texts must hold at least one text');
    if (texts.length > maxTextsPerRequest)
      throw new ToxScopeError('payload_too_large', `${texts.length} texts in one request, more than the limit of ${maxTextsPerRequest}`, {
        texts: texts.length,
        limit: maxTextsPerRequest,
      });
    texts.forEach((t, i) => {
      if (typeof t !== 'string') throw validationError(`texts[${i}] must be a string`);
      if (t.length === 0) throw validationError(`texts[${i}] is empty`);
      if (t.length > maxCharsPerText)
        throw new ToxScopeError('payload_too_large', `texts[${i}] has ${t.length} characters, more than the limit of ${maxCharsPerText}`, {
          index: i,
          characters: t.length,
          limit: maxCharsPerText,
        });
      const lone = loneSurrogateAt(t);
      if (lone >= 0) throw validationError(`texts[${i}] is not valid UTF-16: it holds a lone surrogate at index ${lone}`);
    });
  }

  /** The batch function: one padded forward pass; each window's own tokens' codes. */
  private async forward(items: WindowItem[]): Promise<TokenCodes[]> {
    const aliveBefore = this.parts.engine.failure?.() === null;
    let batch: TopKBatch;
    try {
      batch = await this.parts.engine.runTopK(items.map((w) => w.ids), 'right'); // codes [B, T, k]
    } catch (e) {
      // the engine died with this batch in it (not before): its texts are suspects
      if (this.quarantine && aliveBefore && this.parts.engine.failure?.()) this.quarantine.died([...new Set(items.map((w) => w.text!))]);
      throw e;
    }
    const bad = firstNonFinite(batch.values);
    if (bad >= 0)
      throw new ToxScopeError('internal', `the engine produced a non-finite SAE code (${batch.values[bad]} at [${Math.floor(bad / (batch.seqLen * batch.k))}, ${Math.floor(bad / batch.k) % batch.seqLen}, ${bad % batch.k}]): NaN or infinite weights in the model or SAE?`, { nonFinite: true });
    return items.map((w, r) => sliceRow(batch, r, w.ownFrom, w.ids.length));
  }
}

/** Per-feature contributions summed over the head's parts; the topN by |contribution|, with spans. */
async function explain(
  contributions: readonly { feature: number; contribution: number; firingRate: number }[],
  codes: TopKBatch,
  offsets: readonly [number, number][],
  topN: number,
  labels: FeatureLabels | null,
  pause: () => Promise<void> | undefined,
): Promise<FeatureExplanation[]> {
  const byFeature = new Map<number, { contribution: number; firingRate: number }>();
  for (const c of contributions) {
    const e = byFeature.get(c.feature);
    if (e) e.contribution += c.contribution;
    else byFeature.set(c.feature, { contribution: c.contribution, firingRate: c.firingRate });
  }
  const top = [...byFeature].sort((a, b) => Math.abs(b[1].contribution) - Math.abs(a[1].contribution) || a[0] - b[0]).slice(0, topN);
  const out: FeatureExplanation[] = [];
  for (const [id, e] of top) {
    await pause(); // each feature's spans scan the whole text's codes
    const l = labels?.get(id);
    out.push({
      id, contribution: e.contribution, firingRate: e.firingRate, spans: featureSpans(codes, offsets, id),
      ...(l && { label: l.label, topTokens: l.tokens, ...(l.snippets && { snippets: l.snippets }) }),
    });
  }
  return out;
}

/** Longest run of result work (features, scores) on the event loop before it yields. */
const RESULT_SLICE_MS = 5;
/** A segment that tokenized to nothing on its own: no tokens, nothing fired (the head skips it). */
const EMPTY_FEATURES: TextFeatures = { nTokens: 0, ids: new Int32Array(0), counts: new Int32Array(0), rates: new Float32Array(0), maxActs: new Float32Array(0) };
/** Tokens whose features are added in one step (a text's features are added in steps of this many). */
const FEATURE_STEP_TOKENS = 1024;

/** A function to await between steps of long work: it yields to the event loop once `ms` have passed since the last yield. */
function slicer(ms: number): () => Promise<void> | undefined {
  let since = performance.now();
  return () => {
    if (performance.now() - since < ms) return undefined;
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        since = performance.now();
        resolve();
      }),
    );
  };
}

/** Words in several scripts, so the warm-up's tokens reach more than one corner of the embedding table. */
const WARM_UP_TEXT = 'warm-up: hello world, Guten Morgen, bonjour, привет, 你好, مرحبا, नमस्ते 123 !?';

/** Index of the first NaN or infinite value, or -1 (x * 0 is 0 only for finite x). */
function firstNonFinite(a: Float32Array): number {
  let probe = 0;
  for (let i = 0; i < a.length; i++) probe += a[i] * 0;
  return probe === 0 ? -1 : a.findIndex((x) => !Number.isFinite(x));
}

/**
 * The `language` label of the prediction metrics, from a bounded set: a detected language is one of the
 * identifier's 176 labels (or 'und'); a hinted one is any code a caller sends ('qq', 'zz', 'abc' would each make
 * new series), so it keeps its code only when the head has its own threshold or calibration for it, else 'other'.
 */
export function metricLanguage(lang: LanguageTag, thresholdUsed: string, calibrationUsed: string): string {
  if (lang.source !== 'hint' || lang.code === UNDETERMINED) return lang.code;
  return thresholdUsed === lang.code || calibrationUsed === lang.code ? lang.code : 'other';
}

/** Index of the first unpaired surrogate, or -1 (String.prototype.isWellFormed is ES2024). */
export function loneSurrogateAt(t: string): number {
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = t.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
      else return i;
    } else if (c >= 0xdc00 && c <= 0xdfff) return i;
  }
  return -1;
}
