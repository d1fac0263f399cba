/** The head's public surface: what the CLI, the bundle and the engine import. */
export { FeatureTransform, FEATURE_PARTS, type FeaturePart, type TransformOptions, type TransformState } from './features.js';
export { fitLogistic, sigmoid, type LogisticOptions, type LogisticFit, type ClassWeight } from './logistic.js';
export { fitCalibration, fitPlatt, fitTemperature, calibratorFor, calibratedProbability, type Calibrator, type CalibrationTable, type CalibrationMethod } from './calibration.js';
export { chooseThreshold, chooseThresholds, thresholdFor, type ThresholdObjective, type ThresholdTable, type ThresholdChoice } from './thresholds.js';
export { rankFeatures, chooseK, fitDiscoveryRule, DiscoveryRule, ruleSchema, type FeatureBias, type RuleSet, type RuleScore, type DiscoveryRuleJson } from './discovery.js';
export { binaryMetrics, metricsByLanguage, rocAuc, averagePrecision, expectedCalibrationError, type BinaryMetrics, type MetricsReport } from './metrics.js';
export { Head, headSchema, HEAD_FORMAT, HEAD_FORMAT_VERSION, type HeadScore, type HeadJson, type Contribution, type HeadParts } from './head.js';
export { trainHead, type TrainInput, type TrainOptions, type TrainReport, type TrainResult } from './train.js';
export { evaluateHead, evaluateRule, evaluateHeadAndRule, predictHead, type LabeledSet, type EvalReport } from './evaluate.js';
export { stratifiedSplit, type Split } from './split.js';
export type { GroupPolicy } from './groups.js';
export type { TextFeatures } from './text-features.js';
