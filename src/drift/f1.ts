/**
 * Pure math for drift monitoring: precision / recall / F1 of the toxic class from confusion counts, drift
 * against the calibration-time F1, and window arithmetic. Undefined ratios are null, never NaN or 0.
 */
import { validationError } from '../errors.js';

export interface Confusion {
  tp: number; // predicted toxic, labeled toxic
  fp: number; // predicted toxic, labeled clean
  fn: number; // predicted clean, labeled toxic
  tn: number; // predicted clean, labeled clean
}

export interface F1Stats {
  n: number; // labeled predictions
  precision: number | null; // tp / (tp + fp); null without predicted positives
  recall: number | null; //    tp / (tp + fn); null without labeled positives
  f1: number | null; //        2tp / (2tp + fp + fn); null when there are no positives at all
}

export function f1Stats(c: Confusion): F1Stats {
  const ratio = (num: number, den: number) => (den > 0 ? num / den : null);
  return {
    n: c.tp + c.fp + c.fn + c.tn,
    precision: ratio(c.tp, c.tp + c.fp),
    recall: ratio(c.tp, c.tp + c.fn),
    f1: ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn),
  };
}

/** drift = F1 - baseline; null when either is unknown. */
export function f1Drift(f1: number | null, baseline: number | null | undefined): number | null {
  return f1 === null || baseline === null || baseline === undefined ? null : f1 - baseline;
}

/** Alarm when |drift| exceeds the tolerance with at least minLabeled labeled predictions in the window. */
export function isDriftAlarm(drift: number | null, n: number, tolerance: number, minLabeled: number): boolean {
  return drift !== null && n >= minLabeled && Math.abs(drift) > tolerance;
}

const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
export const MAX_WINDOW_MS = 366 * UNIT_MS.d;

/** '30m', '24h', '7d' (also s and w) -> milliseconds. Throws a validation error naming `field`. */
export function parseWindow(value: string, field = 'window'): number {
  const m = /^(\d{1,6})(s|m|h|d|w)$/.exec(value.trim());
  if (!m) {
    throw validationError(
      `${field} must be a whole number followed by s, m, h, d or w (for example '30m', '24h', '7d'); got '${value}'`,
      { field, value },
    );
  }
  const ms = Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  if (ms <= 0) throw validationError(`${field} must be longer than zero; got '${value}'`, { field, value });
  if (ms > MAX_WINDOW_MS) throw validationError(`${field} must be at most 366d; got '${value}'`, { field, value });
  return ms;
}

export interface Window {
  start: Date; // inclusive
  end: Date; //   exclusive
}

/** The window of length windowMs ending at `now`. */
export function trailingWindow(now: Date, windowMs: number): Window {
  return { start: new Date(now.getTime() - windowMs), end: now };
}

/**
 * The window of length windowMs ending at the last multiple of stepMs (epoch-aligned) at or before `now`:
 * replicas running the same schedule compute, and store, the same windows.
 */
export function alignedWindow(now: Date, windowMs: number, stepMs: number): Window {
  const end = Math.floor(now.getTime() / stepMs) * stepMs;
  return { start: new Date(end - windowMs), end: new Date(end) };
}
