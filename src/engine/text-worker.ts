/**
 * Texts to tokens on a worker thread, so that no request's texts hold the event loop.
 *
 * Before this, the main thread normalised, identified and tokenized every text (in 256-character pieces with
 * yields): a 100,000-character text still cost the event loop 40-120 ms of normalising in one go, a CJK text
 * 16-19 ms of language identification, 16k offsets 27 ms to map back, and each tokenizer piece (up to ~40 ms
 * for CJK on a loaded machine) ran there too. Building a tokenizer for a newly reloaded model directory
 * (JSON.parse of an 11 MB tokenizer.json, ~0.5 s) also ran there.
 *
 * The worker owns the tokenizer (built in the worker from the model directory) and a fastText language
 * identifier, and runs src/engine/text-prep.ts's pipeline for every request:
 *
 *   - fairness: requests take turns of `sliceMs` (a few ms) each, round-robin, a newly arrived request first;
 *     a long request is only ever a slice ahead of a short one, whatever it holds;
 *   - budget: a request over its token budget is refused (413) as soon as its running count passes it, after
 *     tokenizing at most the budget plus one piece (the refusal carries what was tokenized);
 *   - a client that leaves or a deadline that passes cancels the request's remaining turns.
 *
 * A worker that dies (it holds no state but the tokenizer) is replaced on the next request; what it held is
 * refused as 'unavailable'. One worker per classifier: a reload builds the new model's tokenizer in its own
 * worker while the old classifier keeps serving.
 */
import { isMainThread, parentPort, threadId, Worker, workerData } from 'node:worker_threads';
import { ToxScopeError, type ErrorKind } from '../errors.js';
import type { PrepareInput, PreparedText } from './text-prep.js';
import { workerBootstrap, workerStarted } from '../util/worker-bootstrap.js';

/** What the main thread knows of the worker's tokenizer. */
export interface TokenizerInfo {
  /** the tokenizer.json it was built from */
  path: string;
  padId: number;
  vocabSize: number;
  maxId: number;
}

export interface PrepareRequest extends PrepareInput {
  /** the client went away: stop and refuse with 'aborted' */
  signal?: AbortSignal;
  /** performance.now() of this thread after which the request is refused with 'timeout' (absent: none) */
  deadline?: number;
}

/** What a classifier needs from its text preparation (TextWorker satisfies it). */
export interface TextPreparer {
  prepare(request: PrepareRequest): Promise<PreparedText[]>;
  close(): Promise<void>;
}

/** Counters of the worker, for tests and diagnostics. */
export interface TextWorkerStats {
  /** the worker's thread id (never the main thread's 0) */
  threadId: number;
  /** requests answered (prepared or refused) */
  requests: number;
  /** tokenizer calls (pieces) */
  pieces: number;
  /** characters handed to the tokenizer */
  chars: number;
}

export interface TextWorkerOptions {
  /** the model directory whose tokenizer to build (undefined: the packaged Qwen3 tokenizer) */
  modelDir?: string;
  /** longest turn of one request before the next one's (default 4 ms) */
  sliceMs?: number;
}

type ToWorker =
  | { type: 'prepare'; id: number; input: PrepareInput }
  | { type: 'cancel'; id: number }
  | { type: 'stats'; id: number };
type FromWorker =
  | { type: 'ready'; tokenizer: TokenizerInfo }
  | { type: 'prepared'; id: number; texts: PreparedText[] }
  | { type: 'stats'; id: number; stats: TextWorkerStats }
  | { type: 'error'; id: number | null; error: SerializedError };

interface SerializedError {
  kind: ErrorKind | null;
  message: string;
  details?: Record<string, unknown>;
}

const serialize = (e: unknown): SerializedError =>
  e instanceof ToxScopeError ? { kind: e.kind, message: e.message, details: e.details } : { kind: null, message: (e as Error)?.message ?? String(e) };
const revive = (e: SerializedError, what: string): ToxScopeError =>
  e.kind ? new ToxScopeError(e.kind, e.message, e.details) : new ToxScopeError('internal', `${what}: ${e.message}`);

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

/** A started worker whose tokenizer is built. */
interface Live {
  worker: Worker;
  tokenizer: TokenizerInfo;
}

export class TextWorker implements TextPreparer {
  private live: Promise<Live> | null;
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private closed = false;
  /** workers started after one died */
  private restarts = 0;

  private constructor(private readonly options: TextWorkerOptions, first: Live) {
    this.live = Promise.resolve(first);
    this.watch(first.worker);
  }

  /** Start the worker and build the tokenizer (and language identifier) in it. */
  static async open(options: TextWorkerOptions = {}): Promise<TextWorker> {
    return new TextWorker(options, await start(options));
  }

  /** how many times a dead worker was replaced */
  get replaced(): number {
    return this.restarts;
  }

  /** The tokenizer the worker built (path, pad id, vocabulary). */
  async tokenizer(): Promise<TokenizerInfo> {
    return (await this.current()).tokenizer;
  }

  /**
   * Normalise, identify, tokenize within the budget and map offsets back, on the worker. Rejects with the
   * pipeline's own errors (validation, payload_too_large), 'aborted' when the signal fires, 'timeout' at the
   * deadline, 'unavailable' when the worker died meanwhile (the next call starts a new one).
   */
  async prepare({ signal, deadline, ...input }: PrepareRequest): Promise<PreparedText[]> {
    if (signal?.aborted) throw new ToxScopeError('aborted', 'the client went away before its texts were tokenized');
    const { worker } = await this.current();
    const id = ++this.seq;
    return new Promise<PreparedText[]>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const stop = (e: ToxScopeError) => {
        if (!this.pending.delete(id)) return;
        cleanup();
        worker.postMessage({ type: 'cancel', id } satisfies ToWorker);
        reject(e);
      };
      const onAbort = () => stop(new ToxScopeError('aborted', 'the client went away while its texts were tokenized'));
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      this.pending.set(id, {
        resolve: (v) => (cleanup(), resolve(v as PreparedText[])),
        reject: (e) => (cleanup(), reject(e)),
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      if (deadline !== undefined)
        timer = setTimeout(() => stop(new ToxScopeError('timeout', 'request deadline passed while its texts were tokenized')), Math.max(0, deadline - performance.now()));
      worker.postMessage({ type: 'prepare', id, input } satisfies ToWorker);
    });
  }

  /** The worker's counters (a round trip through its queue). */
  async stats(): Promise<TextWorkerStats> {
    const { worker } = await this.current();
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: (v) => resolve(v as TextWorkerStats), reject });
      worker.postMessage({ type: 'stats', id } satisfies ToWorker);
    });
  }

  /**
   * End the worker (requests still being prepared are refused as 'unavailable'). It holds nothing to save, so it
   * is terminated rather than asked to stop: a shutdown never waits on it.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const live = await this.live?.catch(() => null);
    this.live = null;
    await live?.worker.terminate();
  }

  /** The running worker, or a new one when the last one died. */
  private current(): Promise<Live> {
    if (this.closed) return Promise.reject(new ToxScopeError('unavailable', 'the tokenizer worker is closed'));
    if (!this.live) {
      this.restarts++;
      const next = start(this.options);
      this.live = next;
      next.then(
        (l) => this.watch(l.worker),
        () => {
          if (this.live === next) this.live = null; // try again on the next request
        },
      );
    }
    return this.live;
  }

  private watch(worker: Worker): void {
    worker.on('message', (m: FromWorker) => {
      if (m.type === 'ready') return;
      const p = m.id === null ? undefined : this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id!);
      if (m.type === 'prepared') p.resolve(m.texts);
      else if (m.type === 'stats') p.resolve(m.stats);
      else p.reject(revive(m.error, 'preparing the texts failed'));
    });
    let gone = false;
    const died = (why: string) => {
      if (gone) return;
      gone = true;
      if (!this.closed) this.live = null; // replaced on the next request
      const e = new ToxScopeError('unavailable', why);
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on('error', (e) => died(`the tokenizer worker crashed: ${e.message}`));
    worker.on('exit', (code) => died(this.closed ? 'the tokenizer worker is closed' : `the tokenizer worker exited (code ${code})`));
  }

  /** Test hook: end the worker thread as a crash would. */
  async kill(): Promise<void> {
    const live = await this.live;
    await live?.worker.terminate();
  }
}

function start(options: TextWorkerOptions): Promise<Live> {
  const worker = new Worker(workerBootstrap(import.meta.url), { eval: true, workerData: { toxscopeText: true, options } });
  return workerStarted<FromWorker, Live>(worker, 'the tokenizer worker', (m) =>
    m.type === 'ready' ? { value: { worker, tokenizer: m.tokenizer } }
    : m.type === 'error' && m.id === null ? { error: revive(m.error, 'the tokenizer worker failed to start') }
    : undefined,
  );
}

/** Worker side: build the tokenizer and identifier, then prepare requests in round-robin turns. */
async function serveTexts(): Promise<void> {
  const port = parentPort!;
  const send = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
  const options = (workerData as { options: TextWorkerOptions }).options;
  const sliceMs = options.sliceMs ?? 4;
  const [{ loadTokenizer }, { createLanguageIdentifier }, { prepareTexts }] = await Promise.all([
    import('./tokenizer.js'),
    import('./language.js'),
    import('./text-prep.js'),
  ]);
  let tokenizer: Awaited<ReturnType<typeof loadTokenizer>>;
  let lid: Awaited<ReturnType<typeof createLanguageIdentifier>>;
  try {
    [tokenizer, lid] = await Promise.all([loadTokenizer(options.modelDir), createLanguageIdentifier()]);
  } catch (e) {
    send({ type: 'error', id: null, error: serialize(e) });
    process.exit(1);
  }
  const stats: TextWorkerStats = { threadId, requests: 0, pieces: 0, chars: 0 };
  const counted = {
    splitPieces: (t: string) => tokenizer.splitPieces(t),
    encodeWithOffsets: (t: string) => {
      stats.pieces++;
      stats.chars += t.length;
      return tokenizer.encodeWithOffsets(t);
    },
  };
  send({ type: 'ready', tokenizer: { path: tokenizer.path, padId: tokenizer.padId, vocabSize: tokenizer.vocabSize, maxId: tokenizer.maxId } });

  // Requests in turn order: the front one runs for up to sliceMs, then goes to the back. A new request goes to
  // the front (it has had no turn yet). Between turns the worker returns to its event loop, so new requests and
  // cancellations are seen within one turn.
  const turns: { id: number; work: Generator<void, PreparedText[]> }[] = [];
  let scheduled = false;
  const schedule = () => {
    if (scheduled || turns.length === 0) return;
    scheduled = true;
    setImmediate(turn);
  };
  const turn = () => {
    scheduled = false;
    const job = turns.shift();
    if (!job) return;
    const end = performance.now() + sliceMs;
    try {
      for (;;) {
        const step = job.work.next();
        if (step.done) {
          stats.requests++;
          const texts = step.value;
          send({ type: 'prepared', id: job.id, texts }, texts.map((t) => t.offsets.buffer as ArrayBuffer));
          break;
        }
        if (performance.now() >= end) {
          turns.push(job);
          break;
        }
      }
    } catch (e) {
      stats.requests++;
      send({ type: 'error', id: job.id, error: serialize(e) });
    }
    schedule();
  };
  port.on('message', (m: ToWorker) => {
    if (m.type === 'prepare') {
      turns.unshift({ id: m.id, work: prepareTexts(m.input, counted, lid) });
      schedule();
    } else if (m.type === 'cancel') {
      const at = turns.findIndex((j) => j.id === m.id);
      if (at >= 0) turns.splice(at, 1);
    } else if (m.type === 'stats') send({ type: 'stats', id: m.id, stats: { ...stats } });
  });
}

if (!isMainThread && (workerData as { toxscopeText?: boolean } | null)?.toxscopeText) void serveTexts();
