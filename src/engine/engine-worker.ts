/**
 * The forward engine on a worker thread.
 *
 * onnxruntime-node's `session.run` blocks the thread that calls it (its async run() is a setImmediate
 * around a synchronous call; measured: a 1k-token batch of the demo bundle holds the event loop for
 * 160-200 ms). On the main thread that stalls everything HTTP does meanwhile: health checks, fail-fast
 * 429s, parsing and tokenizing the next requests. Here ForwardEngine lives in a worker_thread; the main
 * thread sends token ids and gets the top-k codes back (buffers transferred, not copied). One batch at a
 * time, as the Batcher sends them.
 *
 * Under tsx (npm start, vitest) the worker registers tsx's loader before importing this file again.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { ToxScopeError, type ErrorKind } from '../errors.js';
import type { EngineInfo, ForwardEngine as ForwardEngineType, ForwardEngineOptions } from './forward-engine.js';
import type { Padding } from './padding.js';
import type { TopKBatch } from './types.js';
import { workerBootstrap, workerStarted } from '../util/worker-bootstrap.js';

export interface WorkerEngineOptions extends ForwardEngineOptions {
  /**
   * Move the SAE's weights (hundreds of MB for real releases) to the worker instead of copying them: the
   * process then holds one copy, and the caller's TopKSae arrays are detached (unusable) afterwards.
   */
  transferSae?: boolean;
}

type ToWorker = { type: 'run'; id: number; ids: number[][]; padding: Padding } | { type: 'close' };
type FromWorker =
  | { type: 'ready'; info: EngineInfo }
  | { type: 'result'; id: number; batch: TopKBatch }
  | { type: 'error'; id: number | null; error: SerializedError }
  | { type: 'warn'; message: string };

interface SerializedError {
  kind: ErrorKind | null;
  message: string;
  details?: Record<string, unknown>;
}

const serialize = (e: unknown): SerializedError =>
  e instanceof ToxScopeError ? { kind: e.kind, message: e.message, details: e.details } : { kind: null, message: (e as Error)?.message ?? String(e) };
const revive = (e: SerializedError, what: string): ToxScopeError =>
  e.kind ? new ToxScopeError(e.kind, e.message, e.details) : new ToxScopeError('internal', `${what}: ${e.message}`);

export class WorkerEngine {
  readonly info: EngineInfo;
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve(b: TopKBatch): void; reject(e: unknown): void }>();
  private seq = 0;
  private dead: ToxScopeError | null = null;
  private closing: Promise<void> | null = null;

  private constructor(worker: Worker, info: EngineInfo, warn?: (m: string) => void) {
    this.worker = worker;
    this.info = info;
    worker.on('message', (m: FromWorker) => {
      if (m.type === 'warn') warn?.(m.message);
      else if (m.type === 'result' || m.type === 'error') {
        const p = m.id === null ? undefined : this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id!);
        if (m.type === 'result') p.resolve(m.batch);
        else p.reject(revive(m.error, 'forward pass failed'));
      }
    });
    const fail = (why: string) => {
      this.dead ??= new ToxScopeError('unavailable', why);
      for (const p of this.pending.values()) p.reject(this.dead);
      this.pending.clear();
    };
    worker.on('error', (e) => fail(`the engine worker crashed: ${e.message}`));
    worker.on('exit', (code) => fail(this.closing ? 'the engine is closed' : `the engine worker exited (code ${code})`));
  }

  /** Start the worker and open the engine in it (graph build or cache load, session create). */
  static async open(opts: WorkerEngineOptions): Promise<WorkerEngine> {
    const { warn, transferSae, ...options } = opts;
    const transferList = transferSae ? saeBuffers(options.sae) : [];
    const worker = new Worker(workerBootstrap(import.meta.url), { eval: true, workerData: { toxscopeEngine: true, options }, transferList });
    const info = await workerStarted<FromWorker, EngineInfo>(worker, 'the engine worker', (m) => {
      if (m.type === 'warn') warn?.(m.message);
      return m.type === 'ready' ? { value: m.info } : m.type === 'error' ? { error: revive(m.error, `${opts.modelDir}: opening the engine failed`) } : undefined;
    });
    return new WorkerEngine(worker, info, warn);
  }

  /** Why the engine cannot run (its worker thread died or exited), or null while it can; not set by close(). */
  failure(): string | null {
    return this.dead && !this.closing ? this.dead.message : null;
  }

  /** Fused SAE codes for a batch of token-id lists: [B, T, k], as ForwardEngine.runTopK. */
  runTopK(ids: number[][], padding: Padding = 'right'): Promise<TopKBatch> {
    if (this.dead) return Promise.reject(this.dead);
    if (this.closing) return Promise.reject(new ToxScopeError('unavailable', 'the engine is closing'));
    const id = ++this.seq;
    return new Promise<TopKBatch>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'run', id, ids, padding } satisfies ToWorker);
    });
  }

  /** Finish the batch in flight, close the session, end the worker. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      if (this.dead) return resolve();
      this.worker.once('exit', () => resolve());
      this.worker.postMessage({ type: 'close' } satisfies ToWorker);
    });
    return this.closing;
  }
}

/** Worker entry: register tsx when this file is TypeScript, then import it (which runs serveEngine below). */
async function serveEngine(): Promise<void> {
  const port = parentPort!;
  const send = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
  const { ForwardEngine } = await import('./forward-engine.js');
  let engine: ForwardEngineType;
  try {
    engine = await ForwardEngine.open({ ...(workerData.options as WorkerEngineOptions), warn: (message) => send({ type: 'warn', message }) });
  } catch (e) {
    send({ type: 'error', id: null, error: serialize(e) });
    process.exit(1);
  }
  send({ type: 'ready', info: engine.info });
  // Messages are handled one at a time: a run is awaited before the next message's handler starts.
  let chain = Promise.resolve();
  port.on('message', (m: ToWorker) => {
    chain = chain.then(async () => {
      if (m.type === 'close') {
        await engine.close();
        port.close();
        return;
      }
      try {
        const batch = await engine.runTopK(m.ids, m.padding);
        const buffers = [...new Set([batch.values.buffer, batch.indices.buffer, batch.mask.buffer])].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
        send({ type: 'result', id: m.id, batch }, buffers);
      } catch (e) {
        send({ type: 'error', id: m.id, error: serialize(e) });
      }
    });
  });
}

if (!isMainThread && (workerData as { toxscopeEngine?: boolean } | null)?.toxscopeEngine) void serveEngine();

/** The SAE arrays that own their whole buffer (so can be transferred; views into a shared pool are copied). */
function saeBuffers(sae: WorkerEngineOptions['sae']): ArrayBuffer[] {
  if (!sae) return [];
  const arrays = [sae.wEnc, sae.bEnc, sae.inputBias, sae.wDec, sae.bDec].filter((a): a is Float32Array => a !== null);
  const owned = arrays.filter((a) => a.byteOffset === 0 && a.byteLength === a.buffer.byteLength && a.buffer instanceof ArrayBuffer);
  return [...new Set(owned.map((a) => a.buffer as ArrayBuffer))];
}
