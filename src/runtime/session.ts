/**
 * The one module that imports onnxruntime-node: session options, execution providers with a logged
 * fallback to CPU, and input validation against the session's declared inputs.
 * Callers pass and receive plain typed arrays (HostTensor), never onnxruntime objects.
 */
import * as ort from 'onnxruntime-node';
import { ToxScopeError, formatError, validationError } from '../errors.js';

export type Provider = 'cpu' | 'cuda';
export type HostDType = 'float32' | 'int64' | 'int32' | 'bool' | 'uint8';

export interface HostTensor {
  type: HostDType;
  data: Float32Array | BigInt64Array | Int32Array | Uint8Array;
  dims: number[];
}

export interface SessionOptions {
  /** requested execution provider; `cuda` falls back to `cpu` (with a warning) when it cannot load */
  provider?: Provider;
  /** intra-op threads; default: onnxruntime's choice (one per physical core) */
  threads?: number;
  /** onnxruntime's CPU memory arena (default true) */
  memArena?: boolean;
  /** pre-pack constant MatMul weights at load (default true; costs peak memory while loading) */
  prepacking?: boolean;
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** where warnings go (default: stderr) */
  warn?: (message: string) => void;
}

export interface SessionInfo {
  requestedProvider: Provider;
  provider: Provider;
  /** why the requested provider was not used, when it was not */
  fallbackReason?: string;
}

export class OrtSession {
  readonly info: SessionInfo;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  private readonly session: ort.InferenceSession;
  private readonly where: string;

  private constructor(session: ort.InferenceSession, info: SessionInfo, where: string) {
    this.session = session;
    this.info = info;
    this.where = where;
    this.inputNames = session.inputNames;
    this.outputNames = session.outputNames;
  }

  /** Open `modelPath` (external data is resolved next to it). */
  static async create(modelPath: string, opts: SessionOptions = {}): Promise<OrtSession> {
    const requested = opts.provider ?? 'cpu';
    const warn = opts.warn ?? ((m: string) => process.stderr.write(`warning: ${m}\n`));
    const base = sessionOptions(opts);
    if (requested === 'cuda') {
      try {
        const s = await ort.InferenceSession.create(modelPath, { ...base, executionProviders: ['cuda', 'cpu'] });
        return new OrtSession(s, { requestedProvider: 'cuda', provider: 'cuda' }, modelPath);
      } catch (e) {
        const reason = firstLine((e as Error).message);
        warn(`execution provider 'cuda' could not be used (${reason}); falling back to 'cpu'`);
        const s = await createOrThrow(modelPath, { ...base, executionProviders: ['cpu'] });
        return new OrtSession(s, { requestedProvider: 'cuda', provider: 'cpu', fallbackReason: reason }, modelPath);
      }
    }
    const s = await createOrThrow(modelPath, { ...base, executionProviders: ['cpu'] });
    return new OrtSession(s, { requestedProvider: requested, provider: 'cpu' }, modelPath);
  }

  /** Run with every declared input fed; returns the requested outputs (all by default). */
  async run(feeds: Record<string, HostTensor>, outputs: readonly string[] = this.outputNames): Promise<Record<string, HostTensor>> {
    this.validate(feeds);
    for (const o of outputs) if (!this.outputNames.includes(o)) throw validationError(`${this.where}: the graph has no output '${o}' (outputs: ${this.outputNames.join(', ')})`);
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(t.type, t.data, t.dims);
    let result: ort.InferenceSession.ReturnType;
    try {
      result = await this.session.run(ortFeeds, outputs as string[]);
    } catch (e) {
      throw new ToxScopeError('internal', `${this.where}: onnxruntime run failed with inputs ${describeFeeds(feeds)}: ${firstLine((e as Error).message)}`, undefined, { cause: e });
    }
    const out: Record<string, HostTensor> = {};
    for (const o of outputs) {
      const t = result[o] as ort.Tensor;
      out[o] = { type: t.type as HostDType, data: t.data as HostTensor['data'], dims: [...t.dims] };
    }
    return out;
  }

  /** Every declared input present with the declared dtype and rank, fixed dimensions equal; nothing extra. */
  private validate(feeds: Record<string, HostTensor>): void {
    const problems: string[] = [];
    for (const name of this.inputNames) if (!(name in feeds)) problems.push(`missing input '${name}'`);
    for (const name of Object.keys(feeds)) if (!this.inputNames.includes(name)) problems.push(`unexpected input '${name}'`);
    for (const meta of this.session.inputMetadata) {
      const t = feeds[meta.name];
      if (!t || !meta.isTensor) continue;
      if (t.type !== meta.type) problems.push(`input '${meta.name}' has dtype ${t.type}, expected ${meta.type}`);
      const want = meta.shape;
      if (want.length && (t.dims.length !== want.length || want.some((d, i) => typeof d === 'number' && d !== t.dims[i])))
        problems.push(`input '${meta.name}' has dims [${t.dims}], expected [${want}]`);
      const numel = t.dims.reduce((a, b) => a * b, 1);
      if (numel !== t.data.length) problems.push(`input '${meta.name}' has ${t.data.length} elements for dims [${t.dims}]`);
    }
    if (problems.length)
      throw validationError(`${this.where}: bad inputs (${problems.join('; ')}); the graph expects ${this.describeInputs()}; got ${describeFeeds(feeds)}`);
  }

  private describeInputs(): string {
    return this.session.inputMetadata.map((m) => (m.isTensor ? `${m.name}: ${m.type} [${m.shape}]` : `${m.name}: non-tensor`)).join(', ');
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}

function sessionOptions(o: SessionOptions): ort.InferenceSession.SessionOptions {
  if (o.threads !== undefined && (!Number.isInteger(o.threads) || o.threads < 1)) throw validationError(`threads must be a positive integer, got ${o.threads}`);
  return {
    ...(o.threads !== undefined ? { intraOpNumThreads: o.threads } : {}),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    enableCpuMemArena: o.memArena ?? true,
    enableMemPattern: true,
    graphOptimizationLevel: o.optimization ?? 'all',
    extra: { session: { disable_prepacking: o.prepacking === false ? '1' : '0' } },
  };
}

async function createOrThrow(modelPath: string, options: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(modelPath, options);
  } catch (e) {
    throw formatError(`${modelPath}: onnxruntime cannot load the graph: ${firstLine((e as Error).message)}`);
  }
}

function describeFeeds(feeds: Record<string, HostTensor>): string {
  return Object.entries(feeds).map(([n, t]) => `${n}: ${t.type} [${t.dims}]`).join(', ') || '(none)';
}

function firstLine(s: string): string {
  return s.split('\n')[0].slice(0, 400);
}

/** Whether `provider` can create a session here, tried on a tiny model (no real graph is built for nothing). */
export async function providerUsable(provider: Provider, probeModel: Uint8Array): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    const s = await ort.InferenceSession.create(probeModel, { executionProviders: [provider] });
    await s.release();
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: firstLine((e as Error).message) };
  }
}

/** Execution providers onnxruntime-node can list here (cuda appears only where its libraries are installed). */
export function supportedProviders(): string[] {
  return ort.listSupportedBackends().map((b) => b.name);
}
