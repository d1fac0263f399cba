/** Scoring a labeled set with a head or a discovery rule, and the metrics report for each. */
import type { TextFeatures } from './text-features.js';
import type { DiscoveryRule } from './discovery.js';
import type { Head } from './head.js';
import { metricsByLanguage, type MetricsReport } from './metrics.js';

export interface LabeledSet {
  features: readonly TextFeatures[];
  labels: ArrayLike<number>;
  langs: readonly string[];
}

export interface HeadPredictions {
  logits: Float64Array;
  probabilities: Float64Array;
  toxic: Uint8Array;
}

export function predictHead(head: Head, features: readonly TextFeatures[], langs: readonly (string | undefined)[]): HeadPredictions {
  const n = features.length;
  const out: HeadPredictions = { logits: new Float64Array(n), probabilities: new Float64Array(n), toxic: new Uint8Array(n) };
  features.forEach((f, i) => {
    const s = head.score(f, langs[i]);
    out.logits[i] = s.logit;
    out.probabilities[i] = s.probability;
    out.toxic[i] = s.toxic ? 1 : 0;
  });
  return out;
}

/** Per-language and overall metrics of the head: calibrated probabilities, per-language thresholds. */
export function evaluateHead(head: Head, data: LabeledSet): MetricsReport {
  const p = predictHead(head, data.features, data.langs);
  return metricsByLanguage({ labels: data.labels, scores: p.probabilities, predicted: p.toxic, langs: data.langs });
}

/** Per-language and overall metrics of the discovery rule (its score ranks; ece is null). */
export function evaluateRule(rule: DiscoveryRule, data: LabeledSet): MetricsReport {
  const scores = new Float64Array(data.features.length);
  const predicted = new Uint8Array(data.features.length);
  data.features.forEach((f, i) => {
    const s = rule.score(f, data.langs[i]);
    scores[i] = s.score;
    predicted[i] = s.toxic ? 1 : 0;
  });
  return metricsByLanguage({ labels: data.labels, scores, predicted, langs: data.langs, probabilities: false });
}

/** The `toxscope eval --json` object: the head's report at the top level, the rule's under "rule". */
export interface EvalReport extends MetricsReport {
  rule: MetricsReport;
}

export function evaluateHeadAndRule(head: Head, rule: DiscoveryRule, data: LabeledSet): EvalReport {
  return { ...evaluateHead(head, data), rule: evaluateRule(rule, data) };
}
