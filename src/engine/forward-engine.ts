/**
 * A model's forward pass (any registered family) to a target layer (optionally with a fused TopK SAE), as one cached ONNX graph
 * run by onnxruntime. Opening validates the checkpoint before any build; later opens load the cached graph.
 */
import { ToxScopeError, formatError, validationError } from '../errors.js';
import { Checkpoint, assertRunnableTo } from '../model/checkpoint.js';
import { ensureGraph } from '../model/graph-cache.js';
import type { GraphOptions, WeightDtype } from '../model/graph.js';
import type { TopKSae } from '../model/sae/types.js';
import { GraphBuilder, TensorDataType } from '../model/onnx/graph-builder.js';
import { HostTensor, OrtSession, Provider, providerUsable } from '../runtime/session.js';
import { type PrecisionSetting, resolvePrecision } from './precision.js';
import { settleInt8WeightForm } from './int8-weight-form.js';
import { INT8_GRAPH_CHOICES, type Int8WeightForm } from '../model/blocks/int8.js';
import { Padding, QWEN3_PAD_ID, padBatch } from './padding.js';
import type { TopKBatch } from './types.js';

export interface ForwardEngineOptions {
  /** Hugging Face checkpoint directory (any registered family: see src/model/families/registry.ts) */
  modelDir: string;
  /** 0-based decoder layer whose output residual is returned */
  layer: number;
  /** fuse this SAE's TopK encoder after the decoder (enables runTopK) */
  sae?: TopKSae | null;
  provider?: Provider;
  /** where built graphs are cached */
  cacheDir: string;
  threads?: number;
  /** pre-pack MatMul weights at load (default true) */
  prepacking?: boolean;
  padId?: number;
  /** weight precision setting (default 'auto': f16 on CUDA, f32 on CPU; see ./precision.ts) */
  precision?: PrecisionSetting;
  /** choices between equivalent graph implementations (benchmarks and tests); defaults are the measured best */
  graphOptions?: GraphOptions;
  warn?: (message: string) => void;
}

export interface EngineInfo {
  /** the checkpoint's model family (config.json model_type), e.g. 'qwen3' */
  family: string;
  provider: Provider;
  /** precision of the graph in use (see ./precision.ts): f16 on CUDA, f32 or int8 on CPU */
  weightDtype: WeightDtype;
  /** int8 only: how its weights are stored on this machine (src/engine/int8-weight-form.ts) */
  int8Weights?: Int8WeightForm;
  requestedProvider: Provider;
  fallbackReason?: string;
  layer: number;
  numLayers: number;
  dModel: number;
  vocabSize: number;
  sae: { dSae: number; k: number } | null;
  /** the graph's outputs: resid_post, plus topk_values and topk_indices when an SAE is fused */
  outputs: readonly string[];
  modelPath: string;
  /** true when this open built the graph, false when it loaded a cached one */
  built: boolean;
  buildSeconds: number;
  loadSeconds: number;
}

export interface ResidualBatch {
  batch: number; //   B
  seqLen: number; //  T
  dModel: number; //  D
  /** float32 [B, T, D]: residual stream after the target layer; values at pads are meaningless */
  resid: Float32Array;
  /** uint8 [B, T]: 1 for real tokens */
  mask: Uint8Array;
}

export class ForwardEngine {
  readonly info: EngineInfo;
  private readonly session: OrtSession;
  private readonly padId: number;

  private constructor(session: OrtSession, info: EngineInfo, padId: number) {
    this.session = session;
    this.info = info;
    this.padId = padId;
  }

  static async open(opts: ForwardEngineOptions): Promise<ForwardEngine> {
    const ckpt = Checkpoint.open(opts.modelDir);
    let graph;
    let session: OrtSession;
    let weightDtype: WeightDtype;
    let t0 = 0; // the session's load time, not the graph build's
    try {
      assertRunnableTo(ckpt, ckpt.arch, opts.layer);
      if (opts.sae && opts.sae.dModel !== ckpt.config.hiddenSize)
        throw formatError(`${opts.sae.source}: SAE d_model ${opts.sae.dModel} does not match ${opts.modelDir} hidden_size ${ckpt.config.hiddenSize}`);
      // The provider is settled before any build: a CUDA request that cannot load CUDA builds the CPU's graph.
      const requested = opts.provider ?? 'cpu';
      let provider: Provider = requested;
      let fallbackReason: string | undefined;
      if (requested === 'cuda') {
        const probe = await providerUsable('cuda', probeModel());
        if (!probe.ok) {
          (opts.warn ?? ((m: string) => process.stderr.write(`warning: ${m}\n`)))(`execution provider 'cuda' could not be used (${probe.reason}); falling back to 'cpu'`);
          provider = 'cpu';
          fallbackReason = probe.reason;
        }
      }
      const setting = opts.precision ?? 'auto';
      weightDtype = resolvePrecision(setting, provider, { fellBackFromCuda: provider !== requested });
      if (weightDtype === 'int8') await settleInt8WeightForm();
      graph = ensureGraph(opts.cacheDir, ckpt, opts.layer, opts.sae, weightDtype, opts.graphOptions);
      t0 = performance.now();
      session = await OrtSession.create(graph.modelPath, { provider, threads: opts.threads, prepacking: opts.prepacking, warn: opts.warn });
      if (provider === 'cuda' && session.info.provider !== 'cuda') {
        // CUDA loaded for the probe but not for this graph: the CPU's precision and graph instead
        const fellBack = session.info;
        const cpuDtype = resolvePrecision(setting, 'cpu', { fellBackFromCuda: true });
        if (cpuDtype !== weightDtype) {
          await session.close();
          weightDtype = cpuDtype;
          if (weightDtype === 'int8') await settleInt8WeightForm();
          graph = ensureGraph(opts.cacheDir, ckpt, opts.layer, opts.sae, weightDtype, opts.graphOptions);
          t0 = performance.now();
          session = await OrtSession.create(graph.modelPath, { provider: 'cpu', threads: opts.threads, prepacking: opts.prepacking });
        }
        session.info.requestedProvider = fellBack.requestedProvider;
        session.info.fallbackReason = fellBack.fallbackReason;
      } else if (fallbackReason) {
        session.info.requestedProvider = requested;
        session.info.fallbackReason = fallbackReason;
      }
    } finally {
      ckpt.close();
    }
    const c = ckpt.config;
    const info: EngineInfo = {
      family: ckpt.arch.family,
      provider: session.info.provider,
      weightDtype,
      ...(weightDtype === 'int8' && { int8Weights: INT8_GRAPH_CHOICES.weightForm }),
      requestedProvider: session.info.requestedProvider,
      fallbackReason: session.info.fallbackReason,
      layer: opts.layer,
      numLayers: c.numLayers,
      dModel: c.hiddenSize,
      vocabSize: c.vocabSize,
      sae: opts.sae ? { dSae: opts.sae.dSae, k: opts.sae.k } : null,
      outputs: session.outputNames,
      modelPath: graph.modelPath,
      built: graph.built,
      buildSeconds: graph.buildSeconds,
      loadSeconds: (performance.now() - t0) / 1000,
    };
    return new ForwardEngine(session, info, opts.padId ?? QWEN3_PAD_ID);
  }

  /** Residual stream after the target layer for a batch of token-id lists. */
  async runResidual(ids: number[][], padding: Padding = 'right'): Promise<ResidualBatch> {
    const { feeds, batch, seqLen, mask } = this.feeds(ids, padding);
    const out = await this.session.run(feeds, ['resid_post']);
    return { batch, seqLen, dModel: this.info.dModel, resid: out.resid_post.data as Float32Array, mask };
  }

  /** Fused SAE codes: top-k values and feature ids per token. */
  async runTopK(ids: number[][], padding: Padding = 'right'): Promise<TopKBatch> {
    if (!this.info.sae) throw new ToxScopeError('internal', 'runTopK needs an engine opened with an SAE');
    const { feeds, batch, seqLen, mask } = this.feeds(ids, padding);
    const certified = this.info.outputs.includes('sae_exact');
    const out = await this.session.run(feeds, ['topk_values', 'topk_indices', ...(certified ? ['sae_exact'] : [])]);
    const idx64 = out.topk_indices.data as BigInt64Array;
    const indices = new Int32Array(idx64.length);
    for (let i = 0; i < idx64.length; i++) indices[i] = Number(idx64[i]);
    const exact = certified ? Uint8Array.from(out.sae_exact.data as Uint8Array) : undefined;
    return { batch, seqLen, k: this.info.sae.k, values: out.topk_values.data as Float32Array, indices, mask, ...(exact ? { exact } : {}) };
  }

  private feeds(ids: number[][], padding: Padding): { feeds: Record<string, HostTensor>; batch: number; seqLen: number; mask: Uint8Array } {
    const p = padBatch(ids, padding, this.padId);
    const V = this.info.vocabSize;
    ids.forEach((row, b) => {
      const t = row.findIndex((id) => id >= V);
      if (t >= 0) throw validationError(`sequence ${b}, position ${t}: token id ${row[t]} is outside the vocabulary (size ${V})`);
    });
    const dims = [p.batch, p.seqLen];
    return {
      feeds: { input_ids: { type: 'int64', data: p.ids, dims }, attention_mask: { type: 'int64', data: p.mask, dims } },
      batch: p.batch,
      seqLen: p.seqLen,
      mask: Uint8Array.from(p.mask, Number),
    };
  }

  async close(): Promise<void> {
    await this.session.close();
  }
}

/** A one-node model to check that an execution provider loads, before building a real graph for it. */
function probeModel(): Uint8Array {
  const g = new GraphBuilder();
  g.node('Identity', [g.input('x', TensorDataType.FLOAT, [1])], { outputs: ['y'] });
  g.output('y', TensorDataType.FLOAT, [1]);
  return g.encode([{ domain: '', version: 23 }]);
}
