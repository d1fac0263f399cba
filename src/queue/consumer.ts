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
 * Failures: a message that can never be classified (not JSON, wrong shape, too large, an attribute the bundle
 * does not score, a text quarantined for crashing the engine: src/service/text-quarantine.ts) is published to the dead-letter subject with the error and terminated (never redelivered); a
 * transient failure (shutting down, the write queue full) is retried with a delay, and dead-lettered at its last
 * try. Poison messages are never retried forever, not even one that crashes the process each time: the durable
 * consumer's max_deliver is TOXSCOPE_NATS_MAX_DELIVER + 1, and the delivery past the last try is not
 * processed but dead-lettered at once (`max_deliveries`: every try ended without an acknowledgement, i.e. the
 * replica holding it died or stalled). Should a replica die holding even that one, JetStream's MAX_DELIVERIES
 * advisory (consumed by every replica in one queue group) dead-letters it; the dead letter's Nats-Msg-Id
 * (`dead:<stream>:<seq>`) makes the two paths publish it once. No 429s: the consumer fetches less instead.
 *
 * Health: status() says whether the NATS connection is up and the durable consumer exists (/readyz, /healthz
 * and the toxscope_nats_connected / toxscope_nats_consumer_exists gauges read it). A consumer found missing
 * (deleted, or a NATS server that lost its JetStream state) is created again, as at start.
 */
import { connect, headers as natsHeaders, nanos, type NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type Consumer,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import type { QueueConfig } from '../config.js';
import { isToxScopeError, ToxScopeError } from '../errors.js';
import type { Metrics } from '../metrics/metrics.js';
import type { QueueStatus } from '../service/deps.js';
import type { Logger } from '../util/logger.js';
import { deadLetter, parseQueueRequest, predictionIds, type ParsedRequest, type QueueResult } from './message.js';


/** What the consumer needs from the service core. */
export interface QueueCore {
  /** classify and queue the rows durably under the given ids; a ToxScopeError says what went wrong */
  classify(call: { texts: string[]; language?: string | (string | null)[]; attributes?: string[]; requestId: string; predictionIds: string[] }): Promise<{
    results: QueueResult['results'];
    version: string;
    syntheticBackbone: boolean;
  }>;
  /** texts (windows) the batcher can take now; 0 when it is full or not ready */
  room(): number;
  /** the batcher's most windows per forward pass, and the deadline of one classification */
  limits(): { batchTexts: number; deadlineMs: number };
}

export interface ConsumerStats {
  ok: number;
  deadLetters: number;
  retries: number;
  redeliveries: number;
}

const FETCH_EXPIRES_MS = 1000;
/** texts held are bounded by what this replica finishes in this share of a classification's deadline */
const DEADLINE_SHARE = 1 / 3;
/** the completion rate is measured over this window */
const RATE_WINDOW_MS = 10_000;
/** how often lag and ack-pending are read from the server besides what each fetch says (idle, or batcher full) */
const LAG_INTERVAL_MS = 5000;

/** The subject JetStream announces a message that exhausted max_deliver on. */
export const maxDeliveriesAdvisory = (stream: string, durable: string) => `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${stream}.${durable}`;

/**
 * The server says the durable consumer cannot be there: it (or its stream) does not exist, or the server has no
 * JetStream (restarted without it). Timeouts and the like say nothing either way.
 */
const isMissing = (e: unknown) =>
  (e instanceof JetStreamApiError && (e.code === JetStreamApiCodes.ConsumerNotFound || e.code === JetStreamApiCodes.StreamNotFound)) ||
  (e as Error)?.name === 'JetStreamNotEnabled' ||
  /jetstream (is )?not enabled|no responders/i.test((e as Error)?.message ?? '');

interface DeadLetterReason {
  kind: string;
  message: string;
}

export class QueueConsumer {
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private jsm: JetStreamManager | undefined;
  private consumer: Consumer | undefined;
  /** the durable consumer's max_deliver as the server has it (the last delivery is reserved for the dead letter) */
  private maxDeliver = -1;
  private connection: QueueStatus['connection'] = 'connecting';
  private consumerState: QueueStatus['consumer'] = 'unknown';
  private statusSince = new Date();
  private lastError: string | null = null;
  private recovering: Promise<void> | undefined;
  /** the fetch being read: ended at once when the connection drops (it would wait for heartbeats that never come) */
  private batch: ConsumerMessages | undefined;
  private persistResults = false;
  private persistDeadLetters = false;
  private readonly inflight = new Set<Promise<void>>();
  private inflightTexts = 0;
  private textsPerMessage = 1;
  /** (time, texts) of recent completions: this replica's rate, which bounds what it holds */
  private readonly completions: { at: number; texts: number }[] = [];
  private stopping = false;
  private loopDone: Promise<void> | undefined;
  private lagTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  readonly stats: ConsumerStats = { ok: 0, deadLetters: 0, retries: 0, redeliveries: 0 };

  constructor(
    private readonly config: QueueConfig,
    private readonly core: QueueCore,
    private readonly opts: {
      metrics?: Metrics;
      log?: Logger;
      /** how often lag and ack-pending are read besides each fetch (default 5000 ms) */
      lagIntervalMs?: number;
      /** told whenever status() changes */
      onStatus?: (status: QueueStatus) => void;
    } = {},
  ) {}

  /** Connect, make sure the stream and the durable consumer exist, and start fetching. */
  async start(): Promise<void> {
    const c = this.config;
    this.nc = await connect({ servers: c.url, name: `toxscope-consumer-${c.durable}`, maxReconnectAttempts: -1 });
    this.setConnection('connected');
    void this.watchConnection(this.nc);
    this.jsm = await jetstreamManager(this.nc);
    this.js = jetstream(this.nc);
    await this.ensure();
    // before the first fetch: a fetch is what makes the server announce a message past max_deliver
    this.nc.subscribe(maxDeliveriesAdvisory(c.stream, c.durable), {
      queue: `toxscope-dead-letter-${c.durable}`,
      callback: (err, msg) => {
        if (!err) void this.onMaxDeliveries(msg.data);
      },
    });
    this.opts.log?.info('queue consumer started', { url: c.url, stream: c.stream, subject: c.subject, durable: c.durable, results: c.resultsSubject, dead_letter: c.deadLetterSubject, tries: this.tries(), max_deliver: this.maxDeliver });
    this.loopDone = this.loop();
    this.lagTimer = setInterval(() => void this.reportLag(), this.opts.lagIntervalMs ?? LAG_INTERVAL_MS);
    this.lagTimer.unref();
    void this.reportLag();
  }

  /** Whether this replica can consume: the NATS connection and the durable consumer (readiness reads it). */
  status(): QueueStatus {
    const ok = this.connection === 'connected' && this.consumerState === 'present' && !this.stopping;
    return {
      ok,
      connection: this.connection,
      consumer: this.consumerState,
      since: this.statusSince.toISOString(),
      stream: this.config.stream,
      durable: this.config.durable,
      ...(this.lastError && !ok && { error: this.lastError }),
    };
  }

  /** Tries a message gets before it is dead-lettered: max_deliver less the delivery reserved for the dead letter. */
  private tries(): number {
    return this.maxDeliver >= 2 ? this.maxDeliver - 1 : this.maxDeliver;
  }

  private setConnection(state: QueueStatus['connection']): void {
    if (state === this.connection) return;
    this.connection = state;
    this.statusSince = new Date();
    this.opts.metrics?.natsConnected.set(state === 'connected' ? 1 : 0);
    this.opts.onStatus?.(this.status());
  }

  private setConsumerState(state: QueueStatus['consumer'], error?: string): void {
    if (error) this.lastError = error;
    if (state === this.consumerState) return;
    this.consumerState = state;
    this.statusSince = new Date();
    this.opts.metrics?.natsConsumerExists.set(state === 'present' ? 1 : 0);
    this.opts.onStatus?.(this.status());
  }

  private async watchConnection(nc: NatsConnection): Promise<void> {
    void nc.closed().then((e) => {
      this.setConnection('closed');
      if (e && !this.stopping) {
        this.lastError = e.message;
        this.opts.log?.error('the NATS connection closed for good', { error: e.message });
      }
    });
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        this.lastError = `lost the NATS connection to ${s.server}`;
        this.setConnection('reconnecting');
        this.batch?.stop();
        if (!this.stopping) this.opts.log?.warn('lost the NATS connection: reconnecting (not ready meanwhile)', { server: s.server });
      } else if (s.type === 'reconnecting') {
        this.setConnection('reconnecting');
      } else if (s.type === 'reconnect') {
        this.consumerState = 'unknown'; // the server may have lost it: not ready until checked
        this.opts.metrics?.natsConsumerExists.set(0);
        this.setConnection('connected');
        this.opts.log?.info('NATS connection back', { server: s.server });
        // the server may have come back without its JetStream state: check the consumer now, not at the next fetch
        void this.checkConsumer();
      } else if (s.type === 'close') {
        this.setConnection('closed');
      }
    }
  }

  /** Stream and durable consumer exist (created when missing), and the consumer handle is fresh. */
  private async ensure(): Promise<void> {
    await this.ensureStream(this.jsm!);
    await this.ensureConsumer(this.jsm!);
    this.consumer = await this.js!.consumers.get(this.config.stream, this.config.durable);
    this.setConsumerState('present');
  }

  /** Is the durable consumer still there? Missing: create it again (one attempt at a time), as at start. */
  private async checkConsumer(): Promise<void> {
    if (this.stopping || !this.jsm) return;
    if (this.recovering) return this.recovering;
    try {
      await this.jsm.consumers.info(this.config.stream, this.config.durable);
      this.setConsumerState('present');
    } catch (e) {
      if (!isMissing(e)) return; // a timeout and the like: says nothing either way
      const c = this.config;
      if (this.consumerState !== 'missing') this.opts.log?.warn('the durable consumer is missing: creating it again (not ready meanwhile)', { stream: c.stream, durable: c.durable, error: (e as Error).message });
      this.setConsumerState('missing', `the durable consumer ${c.durable} of stream ${c.stream} is not on the server (${(e as Error).message})`);
      this.recovering = this.ensure()
        .then(() => this.opts.log?.info('durable consumer created again', { stream: c.stream, durable: c.durable }))
        .catch(async (err) => {
          this.lastError = `the durable consumer ${c.durable} of stream ${c.stream} could not be created: ${(err as Error).message}`;
          await new Promise((r) => setTimeout(r, 1000)); // at most one attempt a second
        })
        .finally(() => (this.recovering = undefined));
      await this.recovering;
    }
  }

  /** Stop fetching, finish (and acknowledge) what was fetched, close the connection. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopping) return this.loopDone;
    this.stopping = true;
    this.wake?.();
    clearInterval(this.lagTimer);
    if (this.connection !== 'connected') this.batch?.stop(); // nothing more can arrive on it
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
    // one delivery more than the tries: the last one is never processed, it dead-letters (see the top of the file)
    const maxDeliver = c.maxDeliver + 1;
    const existing = await jsm.consumers.info(c.stream, c.durable).catch(() => null);
    if (existing) {
      this.maxDeliver = existing.config.max_deliver ?? -1;
      if (this.maxDeliver !== maxDeliver || existing.config.ack_wait !== nanos(c.ackWaitMs)) {
        // made by an older version or with other settings: these settings are the replicas' contract
        try {
          const updated = await jsm.consumers.update(c.stream, c.durable, { max_deliver: maxDeliver, ack_wait: nanos(c.ackWaitMs) });
          this.opts.log?.info('durable consumer updated to the configured deliveries', { from_max_deliver: this.maxDeliver, max_deliver: updated.config.max_deliver, ack_wait_ms: c.ackWaitMs });
          this.maxDeliver = updated.config.max_deliver ?? -1;
        } catch (e) {
          this.opts.log?.warn('could not update the durable consumer: keeping its settings', { max_deliver: this.maxDeliver, error: (e as Error).message });
        }
      }
      if (this.maxDeliver < 2) this.opts.log?.warn('the durable consumer has no delivery to spare for dead letters: a message that crashes its replica is dead-lettered by the MAX_DELIVERIES advisory only', { max_deliver: this.maxDeliver });
      return;
    }
    this.maxDeliver = maxDeliver;
    await jsm.consumers
      .add(c.stream, {
        durable_name: c.durable,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: c.subject,
        max_deliver: maxDeliver,
        ack_wait: nanos(c.ackWaitMs),
        max_ack_pending: -1,
      })
      .catch(async (e) => {
        const made = await jsm.consumers.info(c.stream, c.durable).catch(() => null);
        if (!made) throw e;
        this.maxDeliver = made.config.max_deliver ?? -1;
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
      if (this.connection !== 'connected' || this.consumerState !== 'present') {
        // fetching cannot work: wait for the connection (watchConnection) or the consumer (checkConsumer)
        if (this.connection === 'connected') await this.checkConsumer();
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      try {
        const batch = await this.consumer!.fetch({ max_messages: want, expires: FETCH_EXPIRES_MS });
        this.batch = batch;
        let received = 0;
        try {
          for await (const m of batch) {
            received++;
            // the fetch says how many messages wait undelivered behind this one: the lag, fresh at every fetch
            if (m.info.pending >= 0) this.opts.metrics?.natsConsumerLag.set(m.info.pending);
            this.track(this.handle(m));
          }
        } finally {
          this.batch = undefined;
        }
        if (this.connection !== 'connected') continue; // ended by a lost connection: says nothing about the lag
        if (received === 0) this.opts.metrics?.natsConsumerLag.set(0); // a fetch that found nothing waiting
        this.setConsumerState('present');
      } catch (e) {
        if (this.stopping) break;
        this.lastError = (e as Error).message;
        this.opts.log?.warn('queue fetch failed; retrying', { error: (e as Error).message });
        await this.checkConsumer();
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /**
   * Messages to ask for: the free in-flight slots, no more texts than the batcher has room for, and no more than
   * this replica finishes in a third of a classification's deadline at its measured rate (at least two batches).
   * The batcher serves its requests in turns, so everything held progresses together: holding more than it can
   * finish in time would make every message miss its deadline together and be retried (measured: 244 of 500
   * 8-text messages timed out with room as the only bound), and would keep messages from replicas that scale up.
   */
  private wanted(): number {
    const slots = this.config.maxInflight - this.inflight.size;
    const { batchTexts, deadlineMs } = this.core.limits();
    const budget = Math.max(2 * batchTexts, this.rate() * (deadlineMs / 1000) * DEADLINE_SHARE);
    const room = Math.min(this.core.room(), budget) - this.inflightTexts;
    return Math.max(0, Math.min(slots, Math.floor(room / Math.max(1, this.textsPerMessage))));
  }

  /** Texts per second this replica completed over the last RATE_WINDOW_MS. */
  private rate(): number {
    const now = performance.now();
    while (this.completions.length > 0 && this.completions[0].at < now - RATE_WINDOW_MS) this.completions.shift();
    if (this.completions.length === 0) return 0;
    const texts = this.completions.reduce((n, c) => n + c.texts, 0);
    return texts / (Math.max(1000, Math.min(RATE_WINDOW_MS, now - this.completions[0].at)) / 1000);
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
    const tries = this.tries();
    if (tries > 0 && tries < this.maxDeliver && deliveries > tries) {
      // every try ended without an ack, a nak or a dead letter: the replica holding it died (crashed, was
      // killed, ran out of memory) or stalled past ack_wait. Processing it again could take this one down too.
      return this.toDeadLetter(m, {
        kind: 'max_deliveries',
        message: `not processed again: its ${tries} ${tries === 1 ? 'try' : 'tries'} ended without an acknowledgement (the replica holding it died or stalled past ack_wait, ${this.config.ackWaitMs} ms, each time)`,
      });
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
      this.completions.push({ at: performance.now(), texts: req.texts.length });
      this.stats.ok++;
      this.opts.metrics?.natsMessages.inc({ outcome: 'ok' });
    } catch (e) {
      // never retried: malformed, too big, or holding a text that crashed the engine repeatedly (quarantined)
      if (isToxScopeError(e) && (e.kind === 'validation' || e.kind === 'payload_too_large' || e.kind === 'quarantined')) return this.toDeadLetter(m, e);
      if (tries > 0 && deliveries >= tries) {
        const reason = isToxScopeError(e) ? e : new ToxScopeError('internal', (e as Error)?.message ?? String(e));
        return this.toDeadLetter(m, { kind: reason.kind, message: `gave up after ${deliveries} deliveries: ${reason.message}` });
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
        return await this.core.classify({ texts: req.texts, language: req.language, attributes: req.attributes, requestId, predictionIds: ids });
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

  /** Publish a dead letter (once per stream sequence where a stream keeps the subject); false when it was a duplicate. */
  private async publishDeadLetter(e: DeadLetterReason, m: { subject: string; data: Uint8Array; deliveries: number; streamSeq: number }): Promise<boolean> {
    const letter = deadLetter({ kind: e.kind, message: e.message }, { ...m, stream: this.config.stream });
    const h = natsHeaders();
    h.set('Toxscope-Error', e.message.slice(0, 200).replace(/[\r\n]/g, ' '));
    const data = JSON.stringify(letter);
    if (!this.persistDeadLetters) {
      this.nc!.publish(this.config.deadLetterSubject, data, { headers: h });
      return true;
    }
    const ack = await this.js!.publish(this.config.deadLetterSubject, data, { msgID: `dead:${this.config.stream}:${m.streamSeq}`, headers: h });
    return !ack.duplicate;
  }

  private countDeadLetter(seq: number, e: DeadLetterReason): void {
    this.stats.deadLetters++;
    this.opts.metrics?.natsMessages.inc({ outcome: 'dead_letter' });
    this.opts.metrics?.natsDeadLetters.inc();
    this.opts.log?.warn('queue message dead-lettered', { stream_seq: seq, kind: e.kind, error: e.message });
  }

  private async toDeadLetter(m: JsMsg, e: DeadLetterReason): Promise<void> {
    let fresh: boolean;
    try {
      fresh = await this.publishDeadLetter(e, { subject: m.subject, data: m.data, deliveries: m.info.deliveryCount, streamSeq: m.seq });
    } catch (err) {
      // not published: leave the message to be redelivered rather than lose it
      this.opts.log?.warn('dead letter not published; the message will be redelivered', { stream_seq: m.seq, error: (err as Error).message });
      m.nak(1000);
      return;
    }
    m.term(); // no reason: nats-server before 2.10 (2.9.10 here) ignores '+TERM <reason>' and redelivers
    if (fresh) this.countDeadLetter(m.seq, e);
  }

  /**
   * JetStream's advisory for a message that exhausted max_deliver: a replica died holding even its last
   * (reserved) delivery, or the consumer has none to spare. One replica of the queue group gets it; the message
   * is read back from the stream and dead-lettered (a duplicate of one already published is dropped by its id).
   */
  private async onMaxDeliveries(data: Uint8Array): Promise<void> {
    let seq = 0;
    let deliveries = 0;
    try {
      const a = JSON.parse(new TextDecoder().decode(data)) as { stream?: string; consumer?: string; stream_seq?: number; deliveries?: number };
      if (a.stream !== this.config.stream || a.consumer !== this.config.durable || !a.stream_seq) return;
      seq = a.stream_seq;
      deliveries = a.deliveries ?? 0;
      const stored = await this.jsm!.streams.getMessage(this.config.stream, { seq });
      if (!stored) throw new Error(`message ${seq} is no longer in the stream`);
      const reason = {
        kind: 'max_deliveries',
        message: `JetStream stopped delivering it after ${deliveries} deliveries (max_deliver) without an acknowledgement: the replicas holding it died or stalled past ack_wait (${this.config.ackWaitMs} ms)`,
      };
      if (await this.publishDeadLetter(reason, { subject: stored.subject, data: stored.data, deliveries, streamSeq: seq })) this.countDeadLetter(seq, reason);
    } catch (e) {
      this.opts.log?.error('a message past max_deliver could not be dead-lettered', { stream_seq: seq, deliveries, error: (e as Error).message });
    }
  }

  private async reportLag(): Promise<void> {
    if (this.connection !== 'connected' || this.stopping) return;
    try {
      const info = await this.jsm?.consumers.info(this.config.stream, this.config.durable);
      if (info) {
        this.setConsumerState('present');
        this.opts.metrics?.natsConsumerLag.set(info.num_pending);
        this.opts.metrics?.natsConsumerAckPending.set(info.num_ack_pending);
      }
    } catch (e) {
      // missing: found here even while nothing is fetched (the batcher full); anything else: the next tick
      if (isMissing(e)) await this.checkConsumer();
    }
  }
}
