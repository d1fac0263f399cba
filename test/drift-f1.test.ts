import { describe, expect, it } from 'vitest';
import { isToxScopeError } from '../src/errors.js';
import { alignedWindow, f1Drift, f1Stats, isDriftAlarm, parseWindow, trailingWindow } from '../src/drift/f1.js';

describe('f1Stats', () => {
  it('computes precision, recall and F1 of the toxic class from counts', () => {
    // tp=6 fp=2 fn=4 tn=8: precision 6/8, recall 6/10, F1 = 12/18
    const s = f1Stats({ tp: 6, fp: 2, fn: 4, tn: 8 });
    expect(s.n).toBe(20);
    expect(s.precision).toBeCloseTo(0.75, 12);
    expect(s.recall).toBeCloseTo(0.6, 12);
    expect(s.f1).toBeCloseTo(2 / 3, 12);
    // F1 equals the harmonic mean of precision and recall
    expect(s.f1).toBeCloseTo((2 * 0.75 * 0.6) / (0.75 + 0.6), 12);
  });

  it('returns null, not NaN or zero, for ratios with an empty denominator', () => {
    expect(f1Stats({ tp: 0, fp: 0, fn: 0, tn: 5 })).toEqual({ n: 5, precision: null, recall: null, f1: null });
    expect(f1Stats({ tp: 0, fp: 0, fn: 3, tn: 1 })).toEqual({ n: 4, precision: null, recall: 0, f1: 0 });
    expect(f1Stats({ tp: 0, fp: 2, fn: 0, tn: 0 })).toEqual({ n: 2, precision: 0, recall: null, f1: 0 });
  });
});

describe('drift and alarms', () => {
  it('drift is F1 minus the calibration baseline, null when either is unknown', () => {
    expect(f1Drift(0.7, 0.8)).toBeCloseTo(-0.1, 12);
    expect(f1Drift(null, 0.8)).toBeNull();
    expect(f1Drift(0.7, null)).toBeNull();
    expect(f1Drift(0.7, undefined)).toBeNull();
  });

  it('alarms only past the tolerance (either sign) and with enough labeled predictions', () => {
    expect(isDriftAlarm(-0.11, 50, 0.1, 50)).toBe(true);
    expect(isDriftAlarm(0.11, 50, 0.1, 50)).toBe(true);
    expect(isDriftAlarm(-0.1, 50, 0.1, 50)).toBe(false); // not strictly greater
    expect(isDriftAlarm(-0.5, 49, 0.1, 50)).toBe(false); // too few labels
    expect(isDriftAlarm(null, 500, 0.1, 50)).toBe(false);
  });
});

describe('parseWindow', () => {
  it('parses seconds, minutes, hours, days and weeks', () => {
    expect(parseWindow('45s')).toBe(45_000);
    expect(parseWindow('30m')).toBe(1_800_000);
    expect(parseWindow('24h')).toBe(86_400_000);
    expect(parseWindow('7d')).toBe(604_800_000);
    expect(parseWindow('2w')).toBe(1_209_600_000);
  });

  it.each(['', '24', 'h', '1.5h', '-1h', '24 hours', '3y', '0h', '400d'])('rejects %j with a validation error naming the field', (v) => {
    try {
      parseWindow(v);
      expect.unreachable();
    } catch (e) {
      expect(isToxScopeError(e) && e.kind).toBe('validation');
      expect((e as Error).message).toMatch(/^window /);
    }
  });
});

describe('windows', () => {
  it('trailing window ends now', () => {
    const now = new Date('2025-03-01T12:00:00Z');
    expect(trailingWindow(now, 3_600_000)).toEqual({ start: new Date('2025-03-01T11:00:00Z'), end: now });
  });

  it('aligned windows end on the last step boundary, so two replicas a few seconds apart agree', () => {
    const a = alignedWindow(new Date('2025-03-01T12:04:59.900Z'), 86_400_000, 300_000);
    const b = alignedWindow(new Date('2025-03-01T12:00:00.000Z'), 86_400_000, 300_000);
    expect(a).toEqual(b);
    expect(a).toEqual({ start: new Date('2025-02-28T12:00:00Z'), end: new Date('2025-03-01T12:00:00Z') });
  });
});
