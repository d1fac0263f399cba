/**
 * The admin page's HTML, for one attribute (a selector picks it; toxicity by default): an overview of every
 * language, then for one language its score histogram,
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
  /** the bundle's trained thresholds (what "revert" restores) */
  bundlePooled: number;
  bundlePerLanguage: Record<string, number>;
}

/** One line of the audit log: a threshold change or a reload. */
export interface AuditRow {
  at: Date;
  actor: string;
  what: string;
  reason: string | null;
  /** 'refused' reloads are shown as such */
  refused?: boolean;
}

/** Below this many predictions in the window a language is folded into "other" (unless it has an own threshold or alarms). */
export const DEFAULT_MIN_VOLUME = 20;

export interface PageData {
  /** the attribute shown (toxicity, insult, ...): statistics, drift and thresholds are that attribute's */
  attribute: string;
  /** every attribute of the loaded bundle (the selector's options; toxicity first) */
  attributes: string[];
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
  /** the drift alarm rule (TOXSCOPE_DRIFT_TOLERANCE, TOXSCOPE_DRIFT_MIN_LABELED) */
  drift: { tolerance: number; minLabeled: number };
  /** languages with fewer predictions in the window are folded into "other" */
  minVolume: number;
  /** the newest threshold changes and reloads; null: no database */
  audit: AuditRow[] | null;
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

/** `&attribute=...` for every attribute but toxicity (links of the toxicity page read as before attributes). */
const attributeParam = (d: Pick<PageData, 'attribute'>) => (d.attribute === 'toxicity' ? '' : `&attribute=${encodeURIComponent(d.attribute)}`);
const attributeField = (d: Pick<PageData, 'attribute'>) => `<input type="hidden" name="attribute" value="${esc(d.attribute)}">`;

function link(d: PageData, language: string): string {
  return `${UI_BASE}?lang=${encodeURIComponent(language)}&window=${encodeURIComponent(d.window)}${attributeParam(d)}`;
}

/** The attribute selector: a plain GET form (no script), so it works on every browser and at phone width. */
function attributeSelector(d: PageData): string {
  const options = d.attributes.map((a) => `<option value="${esc(a)}"${a === d.attribute ? ' selected' : ''}>${esc(a)}</option>`).join('');
  return `<section class="attribute-select"><form class="inline" method="get" action="${UI_BASE}">
<label>attribute<select name="attribute">${options}</select></label>
<input type="hidden" name="window" value="${esc(d.window)}">${d.selected ? `<input type="hidden" name="lang" value="${esc(d.selected)}">` : ''}
<button type="submit" class="show-attribute">Show</button></form>
<p class="muted">Drift, statistics and thresholds below are those of <strong class="current-attribute">${esc(d.attribute)}</strong>: every attribute has its own head, thresholds, feedback and drift windows.</p></section>`;
}

/** The latest stored drift window of a language when it alarms (|drift| > tolerance with enough labels), else null. */
export function alarmOf(d: Pick<PageData, 'history' | 'drift'>, language: string): F1Window | null {
  const last = d.history.filter((h) => h.language === language).at(-1);
  return last && last.drift !== null && Math.abs(last.drift) > d.drift.tolerance && last.n >= d.drift.minLabeled ? last : null;
}

const volumeOf = (d: PageData, language: string) => d.bins.filter((b) => b.language === language).reduce((s, b) => s + b.n, 0);

/** Languages shown on their own row, and those folded into "other" (low volume, no own threshold, no alarm). */
export function foldLanguages(d: PageData, languages: string[]): { shown: string[]; folded: string[] } {
  const keep = (l: string) => volumeOf(d, l) >= d.minVolume || l === d.selected || Object.hasOwn(d.thresholds?.perLanguage ?? {}, l) || alarmOf(d, l) !== null;
  return { shown: languages.filter(keep), folded: languages.filter((l) => !keep(l)) };
}

function overview(d: PageData, all: string[]): string {
  const { shown: languages, folded } = foldLanguages(d, all);
  const rows = languages.map((language) => {
    const labeled = (d.labeled ?? []).filter((r) => r.language === language);
    const predictions = d.bins.filter((b) => b.language === language).reduce((s, b) => s + b.n, 0);
    const t = d.thresholds ? thresholdOf(d.thresholds, language) : null;
    const stats = t ? f1Stats(confusionAt(labeled, t.value)) : null;
    const last = d.history.filter((h) => h.language === language).at(-1);
    const alarm = alarmOf(d, language);
    return `<tr data-language="${esc(language)}"${language === d.selected ? ' class="selected"' : ''}${alarm ? ' data-alarm="1"' : ''}>
<td><a href="${esc(link(d, language))}">${esc(language)}</a></td><td>${predictions}</td><td>${labeled.length}</td>
<td>${t ? num(t.value) + (t.own ? '' : ' <span class="muted">(pooled)</span>') : '–'}</td>
<td>${pct(stats?.precision ?? null)}</td><td>${pct(stats?.recall ?? null)}</td><td>${pct(stats?.f1 ?? null)}</td>
<td>${signed(last?.drift)}</td><td>${alarm ? '<span class="alarm" title="drift beyond the tolerance with enough labeled predictions">alarm</span>' : ''}</td></tr>`;
  });
  if (folded.length > 0) {
    const predictions = folded.reduce((s, l) => s + volumeOf(d, l), 0);
    const labeled = (d.labeled ?? []).filter((r) => folded.includes(r.language)).length;
    rows.push(`<tr data-language="other" class="other"><td><details><summary>other (${folded.length})</summary>${folded.map((l) => `<a href="${esc(link(d, l))}">${esc(l)}</a>`).join(' ')}</details></td>
<td>${predictions}</td><td>${labeled}</td><td colspan="6" class="muted">languages with fewer than ${d.minVolume} predictions each</td></tr>`);
  }
  return `<section><h2>${esc(d.attribute)}: languages, last ${esc(d.window)}</h2>
<div class="scroll"><table class="overview"><thead><tr><th>language</th><th>predictions</th><th>labeled</th><th>threshold</th><th>precision</th><th>recall</th><th>F1</th><th>latest drift</th><th>alarm</th></tr></thead>
<tbody>${rows.join('\n') || '<tr><td colspan="9" class="muted">no predictions in this window</td></tr>'}</tbody></table></div>
<p class="muted">Precision, recall and F1: the stored ${esc(d.attribute)} scores of predictions labeled for ${esc(d.attribute)} re-evaluated at the current threshold. Drift: F1 of the latest stored window minus the calibration baseline; alarm: |drift| above ${d.drift.tolerance} with at least ${d.drift.minLabeled} labeled predictions in the window (as <code>toxscope_drift_alarm{attribute="${esc(d.attribute)}"}</code>).</p>
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

/** The bundle's trained threshold for a language: its own, or the bundle's pooled one. */
function bundleThresholdOf(t: Thresholds, language: string): number {
  return Object.hasOwn(t.bundlePerLanguage, language) ? t.bundlePerLanguage[language] : t.bundlePooled;
}

function revertForm(d: PageData, language: string, current: { value: number }): string {
  if (!d.thresholds) return '';
  const trained = bundleThresholdOf(d.thresholds, language);
  const differs = trained !== current.value || Object.hasOwn(d.thresholds.perLanguage, language) !== Object.hasOwn(d.thresholds.bundlePerLanguage, language);
  if (!differs) return `<p class="muted">This is the bundle's trained threshold.</p>`;
  return `<form class="inline revert" method="post" action="${UI_BASE}/thresholds">
<input type="hidden" name="language" value="${esc(language)}"><input type="hidden" name="revert" value="1"><input type="hidden" name="window" value="${esc(d.window)}">${attributeField(d)}
<label>reason (audit log)<input type="text" name="reason" maxlength="500" size="30"></label>
<button type="submit" class="revert">Revert ${esc(d.attribute)} ${esc(language)} to the bundle's threshold (${num(trained)})</button></form>
<p class="muted">Revert restores the bundle's trained value${Object.hasOwn(d.thresholds.bundlePerLanguage, language) ? '' : " (the bundle has none for this language: it falls back to pooled)"}; it is not the same as removing the language's own threshold.</p>`;
}

function control(d: PageData, language: string, labeled: readonly LabeledScore[], current: { value: number; own: boolean }): string {
  const previewForm = `<form class="inline" method="get" action="${UI_BASE}">
<input type="hidden" name="lang" value="${esc(language)}"><input type="hidden" name="window" value="${esc(d.window)}">${attributeField(d)}
<label>${esc(d.attribute)} threshold for ${esc(language)}<input type="number" name="preview" min="0" max="1" step="0.001" required value="${esc(d.preview ?? current.value)}"></label>
<button type="submit" name="intent" value="preview">Preview</button></form>`;
  if (d.preview === null) {
    return `<section class="control" data-attribute="${esc(d.attribute)}"><h2>${esc(d.attribute)} threshold for ${esc(language)}: ${num(current.value)}${current.own ? '' : ' (pooled)'}</h2>${previewForm}${revertForm(d, language, current)}</section>`;
  }
  const p = previewThreshold(labeled, current.value, d.preview);
  return `<section class="control" data-attribute="${esc(d.attribute)}"><h2>${esc(d.attribute)} threshold for ${esc(language)}: ${num(current.value)}${current.own ? '' : ' (pooled)'}</h2>${previewForm}${revertForm(d, language, current)}
<h2>Preview: ${num(current.value)} → ${num(d.preview)} on ${labeled.length} labeled predictions of the last ${esc(d.window)}</h2>
${previewTable(p)}
<form class="inline" method="post" action="${UI_BASE}/thresholds">
<input type="hidden" name="language" value="${esc(language)}"><input type="hidden" name="threshold" value="${esc(d.preview)}">
<input type="hidden" name="window" value="${esc(d.window)}">${attributeField(d)}
<label>reason (audit log)<input type="text" name="reason" maxlength="500" size="40"></label>
<button type="submit" class="apply">Apply ${num(d.preview)} to ${esc(d.attribute)} ${esc(language)}</button></form>
<p class="muted">Applying goes through PUT /admin/thresholds: recorded in the audit log first, then used by the next request.</p></section>`;
}

function auditSection(d: PageData): string {
  if (d.audit === null) return '';
  const rows = d.audit.map(
    (r) => `<tr${r.refused ? ' class="refused"' : ''}><td>${esc(r.at.toISOString().slice(0, 19).replace('T', ' '))}</td><td>${esc(r.actor)}</td><td>${esc(r.what)}</td><td>${esc(r.reason ?? '')}</td></tr>`,
  );
  return `<section class="audit"><h2>Audit log: threshold changes and reloads</h2>
<div class="scroll"><table class="audit"><thead><tr><th>time (UTC)</th><th>actor</th><th>what</th><th>reason</th></tr></thead>
<tbody>${rows.join('\n') || '<tr><td colspan="4" class="muted">nothing recorded yet</td></tr>'}</tbody></table></div></section>`;
}

function reloadSection(d: PageData): string {
  if (!d.thresholds) return '';
  return `<section class="reload"><h2>Bundle ${esc(d.thresholds.bundleVersion)}</h2>
<form class="inline" method="post" action="${UI_BASE}/reload"><input type="hidden" name="window" value="${esc(d.window)}">
<label>bundle directory (empty: the configured one)<input type="text" name="path" size="40"></label>
<label>reason (audit log)<input type="text" name="reason" maxlength="500" size="30"></label>
<button type="submit" class="reload">Reload</button></form>
<p class="muted">Loads and warms the bundle while the current one keeps serving, then swaps; a bundle that fails validation is refused and the current one stays. Recorded in the audit log either way.</p></section>`;
}

export function renderDashboard(d: PageData): string {
  const languages = languagesOf(d);
  const parts: string[] = [];
  if (d.notice) parts.push(`<div class="notice ${d.notice.kind}" role="status">${esc(d.notice.text)}</div>`);
  const alarms = languages.map((l) => [l, alarmOf(d, l)] as const).filter((x): x is readonly [string, F1Window] => x[1] !== null);
  if (alarms.length > 0)
    parts.push(`<div class="notice error alarms" role="alert" data-alarms="${esc(alarms.map(([l]) => l).join(','))}"><strong>Drift alarm (${esc(d.attribute)})</strong>: ${alarms
      .map(([l, w]) => `<a href="${esc(link(d, l))}">${esc(l)}</a> (F1 ${num(w.f1)}, drift ${signed(w.drift)} over ${w.n} labeled)`)
      .join('; ')}</div>`);
  if (!d.thresholds) parts.push('<div class="notice info">No bundle is loaded yet (see /readyz): thresholds cannot be shown or changed.</div>');
  if (d.thresholds?.syntheticNotice) parts.push(`<div class="notice info" role="note">${esc(d.thresholds.syntheticNotice)}</div>`);
  if (d.labeled === null) parts.push('<div class="notice info">No database is configured: feedback statistics and drift history are unavailable.</div>');
  if (d.attributes.length > 0) parts.push(attributeSelector(d));
  parts.push(overview(d, languages));
  const language = d.selected;
  if (language !== null) {
    const labeled = (d.labeled ?? []).filter((r) => r.language === language);
    const current = d.thresholds ? thresholdOf(d.thresholds, language) : null;
    const marks: Marker[] = [];
    if (current) marks.push({ x: current.value, label: `threshold ${num(current.value)}`, className: 'current' });
    if (d.preview !== null) marks.push({ x: d.preview, label: `preview ${num(d.preview)}`, className: 'preview' });
    const domain = zoomDomain(d.bins.filter((b) => b.language === language), marks);
    parts.push(`<section class="language" data-language="${esc(language)}" data-attribute="${esc(d.attribute)}"><h2>${esc(d.attribute)}, ${esc(language)}: last ${esc(d.window)}</h2>
<p class="key muted"><span style="background:#d9534f"></span>labeled toxic<span style="background:#5b8def"></span>labeled clean<span style="background:#c3c8d1"></span>unlabeled
&nbsp; scores from ${domain[0]} to ${domain[1]} (bars of ${barWidth(domain)})</p>
<div class="charts">${histogram(d, language, marks, domain)}
${labeled.length > 0 ? curve(language, labeled, marks, domain) : '<p class="muted">No labeled predictions for this language in the window: send feedback to POST /v1/feedback.</p>'}
${driftChart(d, language)}</div></section>`);
    if (current) parts.push(control(d, language, labeled, current));
  }
  parts.push(reloadSection(d));
  parts.push(auditSection(d));
  const windowForm = `<form method="get" action="${UI_BASE}">${language ? `<input type="hidden" name="lang" value="${esc(language)}">` : ''}${d.attribute === 'toxicity' ? '' : attributeField(d)}
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
