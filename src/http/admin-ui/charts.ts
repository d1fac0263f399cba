/**
 * Tiny server-rendered SVG charts for the admin page (no script, no build chain): a stacked histogram and a
 * line chart. Each chart carries data attributes (data-chart, data-language, data-* counts) so that tests
 * and scripts can read what it shows.
 */
import { escapeHtml as esc } from './html.js';

const W = 520;
const H = 220;
const PAD = { left: 44, right: 12, top: 12, bottom: 34 };
const PLOT_W = W - PAD.left - PAD.right;
const PLOT_H = H - PAD.top - PAD.bottom;

const fmt = (v: number, digits = 2) => (Number.isInteger(v) ? String(v) : v.toFixed(digits));
const px = (v: number) => v.toFixed(1);

export interface Marker {
  x: number;
  label: string;
  className: string;
}

function frame(kind: string, language: string, title: string, body: string[], extra = ''): string {
  return [
    `<svg class="chart" data-chart="${esc(kind)}" data-language="${esc(language)}"${extra} viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">`,
    `<title>${esc(title)}</title>`,
    `<rect class="plot" x="${PAD.left}" y="${PAD.top}" width="${PLOT_W}" height="${PLOT_H}"/>`,
    ...body,
    '</svg>',
  ].join('\n');
}

function yAxis(max: number, format: (v: number) => string): string[] {
  const out: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    const y = PAD.top + PLOT_H - (PLOT_H * i) / 4;
    out.push(`<line class="grid" x1="${PAD.left}" x2="${PAD.left + PLOT_W}" y1="${px(y)}" y2="${px(y)}"/>`);
    out.push(`<text class="tick" x="${PAD.left - 4}" y="${px(y + 3)}" text-anchor="end">${esc(format(v))}</text>`);
  }
  return out;
}

function markers(list: readonly Marker[], xOf: (x: number) => number): string[] {
  return list.map((m, i) => {
    const x = xOf(m.x);
    return `<g class="marker ${esc(m.className)}" data-x="${m.x}"><line x1="${px(x)}" x2="${px(x)}" y1="${PAD.top}" y2="${PAD.top + PLOT_H}"/><text x="${px(x + 3)}" y="${PAD.top + 12 + 12 * i}">${esc(m.label)}</text></g>`;
  });
}

export interface HistogramBin {
  /** the bin's number in the query (data-bin), and its score range [lo, hi) */
  index: number;
  lo: number;
  hi: number;
  toxic: number;
  clean: number;
  unlabeled: number;
}

/** Score histogram over `domain` (consecutive equal bins covering it): one stacked bar per bin (labeled toxic, labeled clean, unlabeled). */
export function histogramChart(language: string, bins: readonly HistogramBin[], marks: readonly Marker[], domain: readonly [number, number] = [0, 1]): string {
  const totals = bins.map((b) => b.toxic + b.clean + b.unlabeled);
  const max = Math.max(1, ...totals);
  const [d0, d1] = domain;
  const xOf = (x: number) => PAD.left + ((x - d0) / (d1 - d0)) * PLOT_W;
  const yOf = (n: number) => (PLOT_H * n) / max;
  const body: string[] = [...yAxis(max, (v) => (max < 8 ? fmt(v, 1) : String(Math.round(v))))];
  for (const b of bins) {
    let top = PAD.top + PLOT_H;
    const x = xOf(b.lo);
    const w = Math.max(1, xOf(b.hi) - x - 1);
    for (const [cls, n] of [['toxic', b.toxic], ['clean', b.clean], ['unlabeled', b.unlabeled]] as const) {
      if (n === 0) continue;
      const h = yOf(n);
      top -= h;
      body.push(
        `<rect class="bar ${cls}" data-bin="${b.index}" data-lo="${b.lo}" data-hi="${b.hi}" data-count="${n}" x="${px(x + 0.5)}" y="${px(top)}" width="${px(w)}" height="${px(h)}"><title>${esc(`${cls}: ${n} with score in [${fmt(b.lo)}, ${fmt(b.hi)})`)}</title></rect>`,
      );
    }
  }
  for (let i = 0; i <= 4; i++) {
    const t = d0 + ((d1 - d0) * i) / 4;
    body.push(`<text class="tick" x="${px(xOf(t))}" y="${H - 18}" text-anchor="middle">${fmt(Number(t.toFixed(3)), 3)}</text>`);
  }
  body.push(`<text class="axis" x="${PAD.left + PLOT_W / 2}" y="${H - 4}" text-anchor="middle">score</text>`);
  body.push(...markers(marks, xOf));
  const labeled = bins.reduce((s, b) => s + b.toxic + b.clean, 0);
  const all = totals.reduce((s, n) => s + n, 0);
  return frame('histogram', language, `Score histogram for ${language}: ${all} predictions, ${labeled} labeled`, body, ` data-total="${all}" data-labeled="${labeled}" data-domain="${d0} ${d1}"`);
}

export interface Series {
  name: string;
  className: string;
  /** [x, y]; y null = gap */
  points: readonly (readonly [number, number | null])[];
}

export interface LineChartOptions {
  kind: string;
  language: string;
  title: string;
  xDomain: readonly [number, number];
  yDomain: readonly [number, number];
  xTicks: readonly { x: number; label: string }[];
  xLabel: string;
  series: readonly Series[];
  markers?: readonly Marker[];
  /** draw a dot at each point (sparse series) */
  dots?: boolean;
}

export function lineChart(o: LineChartOptions): string {
  const [x0, x1] = o.xDomain;
  const [y0, y1] = o.yDomain;
  const xOf = (x: number) => PAD.left + (x1 === x0 ? PLOT_W / 2 : ((x - x0) / (x1 - x0)) * PLOT_W);
  const yOf = (y: number) => PAD.top + PLOT_H - ((y - y0) / (y1 - y0)) * PLOT_H;
  const body: string[] = [...yAxis(y1 - y0, (v) => fmt(v + y0, 2))];
  for (const t of o.xTicks) body.push(`<text class="tick" x="${px(xOf(t.x))}" y="${H - 18}" text-anchor="middle">${esc(t.label)}</text>`);
  body.push(`<text class="axis" x="${PAD.left + PLOT_W / 2}" y="${H - 4}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  o.series.forEach((s, i) => {
    const runs: string[][] = [[]];
    for (const [x, y] of s.points) {
      if (y === null) runs.push([]);
      else runs.at(-1)!.push(`${px(xOf(x))},${px(yOf(y))}`);
    }
    const defined = s.points.filter(([, y]) => y !== null).length;
    body.push(`<g class="series ${esc(s.className)}" data-series="${esc(s.name)}" data-points="${defined}">`);
    for (const run of runs.filter((r) => r.length > 0)) body.push(`<polyline points="${run.join(' ')}"/>`);
    if (o.dots) for (const [x, y] of s.points) if (y !== null) body.push(`<circle cx="${px(xOf(x))}" cy="${px(yOf(y))}" r="2.5"><title>${esc(`${s.name}: ${fmt(y, 3)}`)}</title></circle>`);
    body.push(`<text class="legend" x="${PAD.left + PLOT_W - 6}" y="${PAD.top + 14 + 13 * i}" text-anchor="end">${esc(s.name)}</text>`, '</g>');
  });
  body.push(...markers(o.markers ?? [], xOf));
  return frame(o.kind, o.language, o.title, body);
}
