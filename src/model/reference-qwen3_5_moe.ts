/**
 * The TypeScript reference forward pass of Qwen3.5-MoE: the hybrid stack of ./reference-qwen3_5.ts with
 * Hugging Face's Qwen3_5MoeSparseMoeBlock as every layer's MLP (routed experts from the fused tensors, always
 * renormalised, plus the sigmoid-gated shared expert). Slow, float64, tiny models only.
 */
import type { WeightSource } from './checkpoint.js';
import { type Qwen35MoeConfig, fusedExperts, qwen35MoeShape } from './families/qwen3_5_moe.js';
import { layerPrefix } from './families/qwen3_5.js';
import { type ReferenceInput, type ReferenceOutput, type RouterChoice, denseMlp, linear, moeMlp } from './reference-forward.js';
import { hybridReferenceForward } from './reference-qwen3_5.js';

export function qwen35MoeReferenceForward(w: WeightSource, c: Qwen35MoeConfig, input: ReferenceInput, lastLayer = c.numLayers - 1): ReferenceOutput {
  const D = c.hiddenSize, S = c.sharedExpertWidth;
  const router = new Map<number, RouterChoice>();
  const out = hybridReferenceForward(w, c, (ws, l, h, N) => {
    const p = layerPrefix(l) + 'mlp.';
    const r = moeMlp(h, N, D, ws.readF32(p + 'gate.weight'), qwen35MoeShape(c), fusedExperts(ws, p + 'experts.', c));
    router.set(l, { k: c.topK, experts: r.experts, weights: r.weights });
    const shared = denseMlp(h, N, D, S, ws.readF32(p + 'shared_expert.gate_proj.weight'), ws.readF32(p + 'shared_expert.up_proj.weight'), ws.readF32(p + 'shared_expert.down_proj.weight'));
    const gate = linear(h, ws.readF32(p + 'shared_expert_gate.weight'), N, D, 1); // [N, 1]
    for (let n = 0; n < N; n++) {
      const s = 1 / (1 + Math.exp(-gate[n]));
      for (let i = 0; i < D; i++) r.out[n * D + i] += s * shared[n * D + i];
    }
    return r.out;
  }, input, lastLayer);
  return { ...out, router };
}
