/**
 * The admin page's HTML: an overview of every language, then for one language its score histogram,
 * precision/recall/F1 against the threshold (from labeled feedback), F1 over time (stored drift windows),
 * and the threshold control with its preview. Pure: takes the numbers, returns a string.
 */
import type { LabeledScore, ScoreBinCount } from '../../db/repository.js';
import type { F1Window } from '../../db/schema.js';
import { histogramChart, lineChart, type HistogramBin, type Marker } from './charts.js';
import { escapeHtml as esc, page } from './html.js';
import { confusionAt, previewThreshold, thresholdCurve, type ThresholdPreview } from './stats.js';
import { f1Stats } from '../../drift/f1.js';

export const UI_BASE = '/admin/ui';
/** score bins of the histogram query (0.001 wide), merged for display into at most MAX_BARS bars */
export const HISTOGRAM_BINS = 1000;
const MAX_BARS = 50;
const BAR_WIDTHS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.025, 0.05];

export interface Thresholds {
  bundleVersion: string;
  /** the bundle runs a synthetic backbone (the demo): say so beside its scores */
  syntheticNotice?: string;
  pooled: number;
  perLanguage: Record<string, number>;
}

export interface PageData {
  /** '7d', as typed */
  window: string;
  windowStart: Date;
  windowEnd: Date;
  /** null: no bundle is loaded yet */
  thresholds: Thresholds | null;
  /** null: no database */
  labeled: readonly LabeledScore[] | null;
  bins: readonly ScoreBinCount[];
  history: readonly F1Window[];
  selected: string | null;
  /** a threshold to preview for the selected language */
  preview: number | null;
  notice?: { kind: 'ok' | 'error' | 'info'; text: string };
}

const pct = (v: number | null) => (v === null ? '–' : (100 * v).toFixed(1) + '%');
const num = (v: number | null | undefined, digits = 3) => (v === null || v === undefined ? '–' : v.toFixed(digits));
const signed = (v: number | null | undefined) => (v === null || v === undefined ? '–' : (v >= 0 ? '+' : '') + v.toFixed(3));

export function thresholdOf(t: Thresholds, language: string): { value: number; own: boolean } {
  const own = Object.hasOwn(t.perLanguage, language);
  return { value: own ? t.perLanguage[language] : t.pooled, own };
}

/** Languages with predictions, labels, drift windows or an own threshold, most labeled first. */
export function languagesOf(d: Pick<PageData, 'labeled' | 'bins' | 'history' | 'thresholds'>): string[] {
  const labeled = new Map<string, number>();
  for (const r of d.labeled ?? []) labeled.set(r.language, (labeled.get(r.language) ?? 0) + 1);
  const all = new Set<string>([...labeled.keys(), ...d.bins.map((b) => b.language), ...d.history.map((h) => h.language), ...Object.keys(d.thresholds?.perLanguage ?? {})]);
  return [...all].sort((a, b) => (labeled.get(b) ?? 0) - (labeled.get(a) ?? 0) || a.localeCompare(b));
}

function link(d: PageData, language: string): string {
  return `${UI_BASE}?lang=${encodeURIComponent(language)}&window=${encodeURIComponent(d.window)}`;
}

function overview(d: PageData, languages: string[]): string {
  const rows = languages.map((language) => {
    const labeled = (d.labeled ?? []).filter((r) => r.language === language);
    const predictions = d.bins.filter((b) => b.language === language).reduce((s, b) => s + b.n, 0);
    const t = d.thresholds ? thresholdOf(d.thresholds, language) : null;
    const stats = t ? f1Stats(confusionAt(labeled, t.value)) : null;
    const last = d.history.filter((h) => h.language === language).at(-1);
    return `<tr data-language="${esc(language)}"${language === d.selected ? ' class="selected"' : ''}>
<td><a href="${esc(link(d, language))}">${esc(language)}</a></td><td>${predictions}</td><td>${labeled.length}</td>
<td>${t ? num(t.value) + (t.own ? '' : ' <span class="muted">(pooled)</span>') : '–'}</td>
<td>${pct(stats?.precision ?? null)}</td><td>${pct(stats?.recall ?? null)}</td><td>${pct(stats?.f1 ?? null)}</td>
<td>${signed(last?.drift)}</td></tr>`;
  });
  return `<section><h2>Languages, last ${esc(d.window)}</h2>
<table class="overview"><thead><tr><th>language</th><th>predictions</th><th>labeled</th><th>threshold</th><th>precision</th><th>recall</th><th>F1</th><th>latest drift</th></tr></thead>
<tbody>${rows.join('\n') || '<tr><td colspan="8" class="muted">no predictions in this window</td></tr>'}</tbody></table>
<p class="muted">Precision, recall and F1: the stored scores of labeled predictions re-evaluated at the current threshold. Drift: F1 of the latest stored window minus the calibration baseline.</p>
</section>`;
}

const snap = (v: number) => Math.round(v * 1000) / 1000;

/**
 * The score range worth showing: where this language's predictions and the marked thresholds lie, padded
 * and snapped outwards to 0.05 (0.01 for a narrow band): a head's scores can sit in a band [0, 1] would hide.
 */
export function zoomDomain(bins: readonly ScoreBinCount[], marks: readonly Marker[]): [number, number] {
  const xs = [...bins.filter((b) => b.n > 0).flatMap((b) => [b.bin / HISTOGRAM_BINS, (b.bin + 1) / HISTOGRAM_BINS]), ...marks.map((m) => m.x)];
  if (xs.length === 0) return [0, 1];
  const [min, max] = [Math.min(...xs), Math.max(...xs)];
  const step = max - min < 0.1 ? 0.01 : 0.05;
  const lo = Math.max(0, snap(Math.floor(min / step) * step - step));
  const hi = Math.min(1, snap(Math.ceil(max / step) * step + step));
  return [lo, hi];
}

/** The narrowest bar width that keeps the domain within MAX_BARS bars. */
export function barWidth(domain: readonly [number, number]): number {
  return BAR_WIDTHS.find((w) => (domain[1] - domain[0]) / w <= MAX_BARS + 1e-9) ?? BAR_WIDTHS.at(-1)!;
}

function histogram(d: PageData, language: string, marks: Marker[], domain: [number, number]): string {
  const width = barWidth(domain);
  const per = Math.round(width * HISTOGRAM_BINS); // query bins per bar
  const first = Math.floor(Math.round(domain[0] * HISTOGRAM_BINS) / per);
  const last = Math.ceil(Math.round(domain[1] * HISTOGRAM_BINS) / per);
  const bins: HistogramBin[] = [];
  for (let index = first; index < last; index++) bins.push({ index, lo: snap(index * width), hi: snap((index + 1) * width), toxic: 0, clean: 0, unlabeled: 0 });
  for (const b of d.bins.filter((x) => x.language === language)) {
    const slot = bins[Math.floor(b.bin / per) - first];
    if (!slot) continue; // outside the domain: cannot happen, the domain covers every non-empty bin
    if (b.truth === null) slot.unlabeled += b.n;
    else if (b.truth) slot.toxic += b.n;
    else slot.clean += b.n;
  }
  return histogramChart(language, bins, marks, [bins[0]?.lo ?? domain[0], bins.at(-1)?.hi ?? domain[1]]);
}

function curve(language: string, labeled: readonly LabeledScore[], marks: Marker[], domain: [number, number]): string {
  const [lo, hi] = domain;
  const points = thresholdCurve(labeled, 1000).filter((p) => p.threshold >= lo - 1e-9 && p.threshold <= hi + 1e-9);
  const ticks = [0, 1, 2, 3, 4].map((i) => Number((lo + ((hi - lo) * i) / 4).toFixed(3)));
  const series = (name: 'precision' | 'recall' | 'f1') => ({ name: name === 'f1' ? 'F1' : name, className: name, points: points.map((p) => [p.threshold, p[name]] as const) });
  return lineChart({
    kind: 'threshold-curve',
    language,
    title: `Precision, recall and F1 against the threshold for ${language} (${labeled.length} labeled predictions)`,
    xDomain: domain,
    yDomain: [0, 1],
    xTicks: ticks.map((x) => ({ x, label: String(x) })),
    xLabel: 'threshold',
    series: [series('precision'), series('recall'), series('f1')],
    markers: marks,
  });
}

function driftChart(d: PageData, language: string): string {
  const rows = d.history.filter((h) => h.language === language);
  const x0 = d.windowStart.getTime();
  const x1 = Math.max(d.windowEnd.getTime(), rows.at(-1)?.windowEnd.getTime() ?? 0);
  const day = (t: number) => new Date(t).toISOString().slice(0, 16).replace('T', ' ');
  return lineChart({
    kind: 'drift',
    language,
    title: `F1 of the drift windows for ${language} (${rows.length} windows)`,
    xDomain: [x0, x1],
    yDomain: [0, 1],
    xTicks: [
      { x: x0, label: day(x0) },
      { x: x1, label: day(x1) },
    ],
    xLabel: 'window end (UTC)',
    series: [
      { name: 'F1', className: 'f1', points: rows.map((r) => [r.windowEnd.getTime(), r.f1] as const) },
      { name: 'baseline', className: 'baseline', points: rows.map((r) => [r.windowEnd.getTime(), r.baseline] as const) },
    ],
    dots: true,
  });
}

function previewTable(p: ThresholdPreview): string {
  const row = (name: string, key: 'precision' | 'recall' | 'f1') =>
    `<tr><td>${name}</td><td>${pct(p.before[key])}</td><td class="delta">${pct(p.after[key])}</td></tr>`;
  return `<table class="preview" data-flips="${p.flips.toToxic + p.flips.toClean}">
<thead><tr><th></th><th>now (${num(p.from)})</th><th>preview (${num(p.to)})</th></tr></thead>
<tbody>${row('precision', 'precision')}${row('recall', 'recall')}${row('F1', 'f1')}
<tr><td>true / false positives</td><td>${p.before.tp} / ${p.before.fp}</td><td class="delta">${p.after.tp} / ${p.after.fp}</td></tr></tbody></table>
<p class="flips"><strong>${p.flips.toToxic + p.flips.toClean}</strong> labeled predictions would change label:
${p.flips.toToxic} clean → toxic, ${p.flips.toClean} toxic → clean (${p.fixed} now agree with the moderators, ${p.broken} no longer do).</p>`;
}

function control(d: PageData, language: string, labeled: readonly LabeledScore[], current: { value: number; own: boolean }): string {
  const previewForm = `<form class="inline" method="get" action="${UI_BASE}">
<input type="hidden" name="lang" value="${esc(language)}"><input type="hidden" name="window" value="${esc(d.window)}">
<label>threshold for ${esc(language)}<input type="number" name="preview" min="0" max="1" step="0.001" required value="${esc(d.preview ?? current.value)}"></label>
<button type="submit" name="intent" value="preview">Preview</button></form>`;
  if (d.preview === null) {
    return `<section class="control"><h2>Threshold for ${esc(language)}: ${num(current.value)}${current.own ? '' : ' (pooled)'}</h2>${previewForm}</section>`;
  }
  const p = previewThreshold(labeled, current.value, d.preview);
  return `<section class="control"><h2>Threshold for ${esc(language)}: ${num(current.value)}${current.own ? '' : ' (pooled)'}</h2>${previewForm}
<h2>Preview: ${num(current.value)} → ${num(d.preview)} on ${labeled.length} labeled predictions of the last ${esc(d.window)}</h2>
${previewTable(p)}
<form class="inline" method="post" action="${UI_BASE}/thresholds">
<input type="hidden" name="language" value="${esc(language)}"><input type="hidden" name="threshold" value="${esc(d.preview)}">
<input type="hidden" name="window" value="${esc(d.window)}">
<label>reason (audit log)<input type="text" name="reason" maxlength="500" size="40"></label>
<button type="submit" class="apply">Apply ${num(d.preview)} to ${esc(language)}</button></form>
<p class="muted">Applying goes through PUT /admin/thresholds: recorded in the audit log first, then used by the next request.</p></section>`;
}

export function renderDashboard(d: PageData): string {
  const languages = languagesOf(d);
  const parts: string[] = [];
  if (d.notice) parts.push(`<div class="notice ${d.notice.kind}" role="status">${esc(d.notice.text)}</div>`);
  if (!d.thresholds) parts.push('<div class="notice info">No bundle is loaded yet (see /readyz): thresholds cannot be shown or changed.</div>');
  if (d.thresholds?.syntheticNotice) parts.push(`<div class="notice info" role="note">${esc(d.thresholds.syntheticNotice)}</div>`);
  if (d.labeled === null) parts.push('<div class="notice info">No database is configured: feedback statistics and drift history are unavailable.</div>');
  parts.push(overview(d, languages));
  const language = d.selected;
  if (language !== null) {
    const labeled = (d.labeled ?? []).filter((r) => r.language === language);
    const current = d.thresholds ? thresholdOf(d.thresholds, language) : null;
    const marks: Marker[] = [];
    if (current) marks.push({ x: current.value, label: `threshold ${num(current.value)}`, className: 'current' });
    if (d.preview !== null) marks.push({ x: d.preview, label: `preview ${num(d.preview)}`, className: 'preview' });
    const domain = zoomDomain(d.bins.filter((b) => b.language === language), marks);
    parts.push(`<section class="language" data-language="${esc(language)}"><h2>${esc(language)}: last ${esc(d.window)}</h2>
<p class="key muted"><span style="background:#d9534f"></span>labeled toxic<span style="background:#5b8def"></span>labeled clean<span style="background:#c3c8d1"></span>unlabeled
&nbsp; scores from ${domain[0]} to ${domain[1]} (bars of ${barWidth(domain)})</p>
<div class="charts">${histogram(d, language, marks, domain)}
${labeled.length > 0 ? curve(language, labeled, marks, domain) : '<p class="muted">No labeled predictions for this language in the window: send feedback to POST /v1/feedback.</p>'}
${driftChart(d, language)}</div></section>`);
    if (current) parts.push(control(d, language, labeled, current));
  }
  const windowForm = `<form method="get" action="${UI_BASE}">${language ? `<input type="hidden" name="lang" value="${esc(language)}">` : ''}
<label style="flex-direction:row;gap:6px;align-items:center;color:#fff">window <input name="window" value="${esc(d.window)}" size="5"></label></form>`;
  const logout = `<form method="post" action="${UI_BASE}/logout"><button type="submit">Log out</button></form>`;
  const version = d.thresholds ? `<span>bundle ${esc(d.thresholds.bundleVersion)}</span>` : '';
  return page('thresholds and drift', parts.join('\n'), version + windowForm + logout);
}

export function renderLogin(message?: string): string {
  return page(
    'log in',
    `<section><h2>Admin token</h2>
${message ? `<div class="notice error" role="alert">${esc(message)}</div>` : ''}
<form class="inline" method="post" action="${UI_BASE}/login">
<label>TOXSCOPE_ADMIN_TOKEN<input type="password" name="token" autocomplete="current-password" required size="40"></label>
<button type="submit">Log in</button></form>
<p class="muted">The token is kept in an HttpOnly, SameSite=Strict cookie for this page only.</p></section>`,
  );
}
