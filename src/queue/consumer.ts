/**
 * `toxscope consume`: a NATS JetStream durable pull consumer on the service core, beside HTTP. Any number of
 * replicas share one durable consumer; JetStream hands each message to one of them.
 *
 *   fetch (only as many messages as the batcher has room for) -> parse -> classify + rows queued durably
 *   (ids derived from the message) -> result published (results subject, and reply_to when asked) -> ack
 *
 * At least once, without duplicate rows: a message is acknowledged only after its result is published and its
 * rows are in the write queue's journal; a replica killed before that leaves the message unacknowledged and
 * JetStream redelivers it after ack_wait, to any replica. The redelivery derives the same prediction ids, so
 * the database (ON CONFLICT DO NOTHING) stores nothing twice, and the same Nats-Msg-Id, so a results stream
 * keeps one result (within its duplicate window).
 *
 * Failures: a message that can never be classified (not JSON, wrong shape, too large) is published to the
 * dead-letter subject with the error and terminated (never redelivered); a transient failure (shutting down,
 * the write queue full) is retried with a delay, and dead-lettered at the last allowed delivery
 * (max_deliver): poison messages are never retried forever. No 429s: the consumer fetches less instead.
 */
import { connect, headers as natsHeaders, nanos, type NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type Consumer,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import type { QueueConfig } from '../config.js';
import { isToxScopeError, ToxScopeError } from '../errors.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Logger } from '../util/logger.js';
import { deadLetter, parseQueueRequest, predictionIds, type ParsedRequest, type QueueResult } from './message.js';


/** What the consumer needs from the service core. */
export interface QueueCore {
  /** classify and queue the rows durably under the given ids; a ToxScopeError says what went wrong */
  classify(call: { texts: string[]; language?: string | (string | null)[]; requestId: string; predictionIds: string[] }): Promise<{
    results: QueueResult['results'];
    version: string;
    syntheticBackbone: boolean;
  }>;
  /** texts (windows) the batcher can take now; 0 when it is full or not ready */
  room(): number;
}

export interface ConsumerStats {
  ok: number;
  deadLetters: number;
  retries: number;
  redeliveries: number;
}

const FETCH_EXPIRES_MS = 1000;
const LAG_INTERVAL_MS = 5000;

export class QueueConsumer {
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private consumer: Consumer | undefined;
  private persistResults = false;
  private persistDeadLetters = false;
  private readonly inflight = new Set<Promise<void>>();
  private inflightTexts = 0;
  private textsPerMessage = 1;
  private stopping = false;
  private loopDone: Promise<void> | undefined;
  private lagTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  readonly stats: ConsumerStats = { ok: 0, deadLetters: 0, retries: 0, redeliveries: 0 };

  constructor(
    private readonly config: QueueConfig,
    private readonly core: QueueCore,
    private readonly opts: { metrics?: Metrics; log?: Logger } = {},
  ) {}

  /** Connect, make sure the stream and the durable consumer exist, and start fetching. */
  async start(): Promise<void> {
    const c = this.config;
    this.nc = await connect({ servers: c.url, name: `toxscope-consumer-${c.durable}`, maxReconnectAttempts: -1 });
    const jsm = await jetstreamManager(this.nc);
    this.js = jetstream(this.nc);
    await this.ensureStream(jsm);
    await this.ensureConsumer(jsm);
    this.consumer = await this.js.consumers.get(c.stream, c.durable);
    this.opts.log?.info('queue consumer started', { url: c.url, stream: c.stream, subject: c.subject, durable: c.durable, results: c.resultsSubject, dead_letter: c.deadLetterSubject });
    this.loopDone = this.loop();
    this.lagTimer = setInterval(() => void this.reportLag(), LAG_INTERVAL_MS);
    this.lagTimer.unref();
    void this.reportLag();
  }

  /** Stop fetching, finish (and acknowledge) what was fetched, close the connection. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopping) return this.loopDone;
    this.stopping = true;
    this.wake?.();
    clearInterval(this.lagTimer);
    await this.loopDone?.catch(() => undefined);
    await Promise.allSettled([...this.inflight]);
    await this.nc?.drain().catch(() => undefined);
  }

  private async ensureStream(jsm: JetStreamManager): Promise<void> {
    const c = this.config;
    const capturedBy = async (subject: string) => jsm.streams.find(subject).catch(() => null);
    const existing = await jsm.streams.info(c.stream).catch(() => null);
    const resultsStream = await capturedBy(c.resultsSubject);
    const deadStream = await capturedBy(c.deadLetterSubject);
    if (!existing) {
      // requests, and results/dead letters unless another stream already keeps them
      const subjects = [c.subject, ...(resultsStream ? [] : [c.resultsSubject]), ...(deadStream ? [] : [c.deadLetterSubject])];
      await jsm.streams.add({ name: c.stream, subjects, duplicate_window: nanos(10 * 60_000) }).catch(async (e) => {
        if (!(await jsm.streams.info(c.stream).catch(() => null))) throw e; // another replica created it first: fine
      });
      this.opts.log?.info('created the queue stream', { stream: c.stream, subjects });
    }
    this.persistResults = (await capturedBy(c.resultsSubject)) !== null;
    this.persistDeadLetters = (await capturedBy(c.deadLetterSubject)) !== null;
    if (!this.persistResults) this.opts.log?.warn('no stream keeps the results subject: results are published on core NATS only', { subject: c.resultsSubject });
    if (!this.persistDeadLetters) this.opts.log?.warn('no stream keeps the dead-letter subject: dead letters are published on core NATS only', { subject: c.deadLetterSubject });
  }

  private async ensureConsumer(jsm: JetStreamManager): Promise<void> {
    const c = this.config;
    if (await jsm.consumers.info(c.stream, c.durable).catch(() => null)) return;
    await jsm.consumers
      .add(c.stream, {
        durable_name: c.durable,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: c.subject,
        max_deliver: c.maxDeliver,
        ack_wait: nanos(c.ackWaitMs),
        max_ack_pending: -1,
      })
      .catch(async (e) => {
        if (!(await jsm.consumers.info(c.stream, c.durable).catch(() => null))) throw e;
      });
  }

  /** Fetch what the batcher can take, hand each message to handle(), repeat until stopped. */
  private async loop(): Promise<void> {
    while (!this.stopping) {
      const want = this.wanted();
      if (want === 0) {
        await new Promise<void>((r) => {
          this.wake = r;
          setTimeout(r, 50);
        });
        continue;
      }
      try {
        const batch = await this.consumer!.fetch({ max_messages: want, expires: FETCH_EXPIRES_MS });
        for await (const m of batch) this.track(this.handle(m));
      } catch (e) {
        if (this.stopping) break;
        this.opts.log?.warn('queue fetch failed; retrying', { error: (e as Error).message });
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /** Messages to ask for: the free in-flight slots, and no more texts than the batcher has room for. */
  private wanted(): number {
    const slots = this.config.maxInflight - this.inflight.size;
    const room = this.core.room() - this.inflightTexts;
    return Math.max(0, Math.min(slots, Math.floor(room / Math.max(1, this.textsPerMessage))));
  }

  private track(p: Promise<void>): void {
    this.inflight.add(p);
    this.opts.metrics?.natsInflight.set(this.inflight.size);
    void p.finally(() => {
      this.inflight.delete(p);
      this.opts.metrics?.natsInflight.set(this.inflight.size);
      this.wake?.();
    });
  }

  private async handle(m: JsMsg): Promise<void> {
    const origin = { stream: this.config.stream, streamSeq: m.seq };
    const deliveries = m.info.deliveryCount;
    if (m.redelivered) {
      this.stats.redeliveries++;
      this.opts.metrics?.natsRedeliveries.inc();
    }
    let req: ParsedRequest;
    try {
      req = parseQueueRequest(m.data);
    } catch (e) {
      return this.toDeadLetter(m, e as ToxScopeError);
    }
    this.textsPerMessage = 0.9 * this.textsPerMessage + 0.1 * req.texts.length;
    this.inflightTexts += req.texts.length;
    // a long classification must not look like a dead replica: tell JetStream we are working on it
    const heartbeat = setInterval(() => m.working(), Math.max(500, this.config.ackWaitMs / 2));
    try {
      const ids = predictionIds(req, origin);
      const out = await this.classifyWithRoom(req, ids, `nats-${origin.stream}-${origin.streamSeq}`);
      const result: QueueResult = {
        id: req.callerId,
        stream: origin.stream,
        stream_seq: origin.streamSeq,
        bundle_version: out.version,
        ...(out.syntheticBackbone && { synthetic_backbone: true as const }),
        results: out.results,
      };
      await this.publishResult(result, req.replyTo);
      await m.ackAck();
      this.stats.ok++;
      this.opts.metrics?.natsMessages.inc({ outcome: 'ok' });
    } catch (e) {
      if (isToxScopeError(e) && (e.kind === 'validation' || e.kind === 'payload_too_large')) return this.toDeadLetter(m, e);
      if (deliveries >= this.config.maxDeliver) {
        const reason = isToxScopeError(e) ? e : new ToxScopeError('internal', (e as Error)?.message ?? String(e));
        return this.toDeadLetter(m, new ToxScopeError(reason.kind, `gave up after ${deliveries} deliveries: ${reason.message}`));
      }
      this.opts.log?.warn('queue message failed; it will be redelivered', { stream_seq: m.seq, deliveries, error: (e as Error)?.message ?? String(e) });
      this.stats.retries++;
      this.opts.metrics?.natsMessages.inc({ outcome: 'retry' });
      m.nak(Math.min(30_000, 1000 * 2 ** (deliveries - 1)));
    } finally {
      clearInterval(heartbeat);
      this.inflightTexts -= req.texts.length;
    }
  }

  /** The batcher being full is not the message's fault: wait for room instead of failing it (no 429 on a queue). */
  private async classifyWithRoom(req: ParsedRequest, ids: string[], requestId: string) {
    for (let wait = 20; ; wait = Math.min(1000, wait * 2)) {
      try {
        return await this.core.classify({ texts: req.texts, language: req.language, requestId, predictionIds: ids });
      } catch (e) {
        if (!(isToxScopeError(e) && e.kind === 'overloaded') || this.stopping) throw e;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  private async publishResult(result: QueueResult, replyTo: string | null): Promise<void> {
    const data = JSON.stringify(result);
    const msgID = `result:${result.stream}:${result.stream_seq}`;
    if (this.persistResults) await this.js!.publish(this.config.resultsSubject, data, { msgID });
    else this.nc!.publish(this.config.resultsSubject, data);
    if (replyTo) this.nc!.publish(replyTo, data);
  }

  private async toDeadLetter(m: JsMsg, e: ToxScopeError): Promise<void> {
    const letter = deadLetter(
      { kind: e.kind, message: e.message },
      { subject: m.subject, data: m.data, deliveries: m.info.deliveryCount, stream: this.config.stream, streamSeq: m.seq },
    );
    const h = natsHeaders();
    h.set('Toxscope-Error', e.message.slice(0, 200).replace(/[\r\n]/g, ' '));
    try {
      const data = JSON.stringify(letter);
      if (this.persistDeadLetters) await this.js!.publish(this.config.deadLetterSubject, data, { msgID: `dead:${this.config.stream}:${m.seq}`, headers: h });
      else this.nc!.publish(this.config.deadLetterSubject, data, { headers: h });
    } catch (err) {
      // not published: leave the message to be redelivered rather than lose it
      this.opts.log?.warn('dead letter not published; the message will be redelivered', { stream_seq: m.seq, error: (err as Error).message });
      m.nak(1000);
      return;
    }
    m.term(); // no reason: nats-server before 2.10 (2.9.10 here) ignores '+TERM <reason>' and redelivers
    this.stats.deadLetters++;
    this.opts.metrics?.natsMessages.inc({ outcome: 'dead_letter' });
    this.opts.metrics?.natsDeadLetters.inc();
    this.opts.log?.warn('queue message dead-lettered', { stream_seq: m.seq, kind: e.kind, error: e.message });
  }

  private async reportLag(): Promise<void> {
    try {
      const info = await this.consumer?.info(true);
      if (info) {
        this.opts.metrics?.natsConsumerLag.set(info.num_pending);
        this.opts.metrics?.natsConsumerAckPending.set(info.num_ack_pending);
      }
    } catch {
      // lag is best effort: the next tick tries again
    }
  }
}
