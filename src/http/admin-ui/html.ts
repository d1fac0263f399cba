/** HTML escaping and the page shell of the admin UI (inline CSS: the page loads nothing else). */

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const CSS = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 16px; align-items: center; }
header h1 { font-size: 16px; margin: 0; flex: 1; }
header form { margin: 0; }
main { padding: 16px 20px; max-width: 1180px; }
section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: 12px 16px; margin-bottom: 16px; }
h2 { font-size: 15px; margin: 0 0 8px; }
table { border-collapse: collapse; }
th, td { padding: 3px 10px; text-align: right; border-bottom: 1px solid #eceff3; }
th:first-child, td:first-child { text-align: left; }
tr.selected td { background: #eef4ff; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.chart { background: #fff; }
.chart .plot { fill: #fafbfc; stroke: #dde1e7; }
.chart .grid { stroke: #eceff3; }
.chart .tick, .chart .axis, .chart .legend { font-size: 10px; fill: #5b6475; }
.chart .bar.toxic { fill: #d9534f; } .chart .bar.clean { fill: #5b8def; } .chart .bar.unlabeled { fill: #c3c8d1; }
.chart polyline { fill: none; stroke-width: 2; }
.chart .precision polyline, .chart .precision circle { stroke: #5b8def; fill: #5b8def; }
.chart .precision polyline { fill: none; }
.chart .recall polyline { stroke: #f0ad4e; } .chart .f1 polyline, .chart .f1 circle { stroke: #2e7d32; }
.chart .f1 circle { fill: #2e7d32; }
.chart .baseline polyline { stroke: #8a8f99; stroke-dasharray: 4 3; } .chart .baseline circle { fill: #8a8f99; }
.chart .legend { font-weight: 600; }
.chart .precision .legend { fill: #5b8def; } .chart .recall .legend { fill: #c77c0e; } .chart .f1 .legend { fill: #2e7d32; }
.chart .marker line { stroke: #1d2330; stroke-width: 1.5; } .chart .marker.preview line { stroke: #8e24aa; stroke-dasharray: 5 3; }
.chart .marker text { font-size: 10px; fill: #1d2330; } .chart .marker.preview text { fill: #8e24aa; }
.key span { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px; vertical-align: middle; }
.notice { padding: 8px 12px; border-radius: 4px; margin-bottom: 12px; }
.notice.ok { background: #e8f5e9; border: 1px solid #a5d6a7; } .notice.error { background: #fdecea; border: 1px solid #f5c2c0; }
.notice.info { background: #fff8e1; border: 1px solid #ffe08a; }
.preview td.delta { color: #8e24aa; font-weight: 600; }
form.inline { display: flex; gap: 8px; align-items: end; flex-wrap: wrap; }
label { display: flex; flex-direction: column; font-size: 12px; color: #5b6475; }
input { font: inherit; padding: 4px 6px; }
button { font: inherit; padding: 5px 12px; cursor: pointer; }
button.apply { background: #8e24aa; color: #fff; border: 1px solid #6a1b7a; border-radius: 4px; }
.muted { color: #5b6475; }
.scroll { overflow-x: auto; max-width: 100%; }
svg.chart { max-width: 100%; height: auto; }
.alarm { background: #d9534f; color: #fff; border-radius: 3px; padding: 1px 6px; font-size: 12px; font-weight: 600; }
tr[data-alarm] td:first-child { border-left: 3px solid #d9534f; }
tr.refused td { color: #a33; }
table.audit td, table.audit th { text-align: left; vertical-align: top; }
button.revert { background: #fff; border: 1px solid #8e24aa; color: #6a1b7a; border-radius: 4px; }
details summary { cursor: pointer; }
@media (max-width: 640px) {
  header { flex-wrap: wrap; padding: 8px 10px; gap: 8px; }
  header h1 { flex-basis: 100%; }
  main { padding: 8px; }
  section { padding: 10px; }
  th, td { padding: 3px 6px; font-size: 12px; }
  form.inline { flex-direction: column; align-items: stretch; }
  input[type="text"], input[type="number"] { width: 100%; box-sizing: border-box; }
}
`;

export function page(title: string, body: string, headerExtra = ''): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${escapeHtml(title)}</title>
<style>${CSS}</style>
</head>
<body>
<header><h1>ToxScope admin: ${escapeHtml(title)}</h1>${headerExtra}</header>
<main>
${body}
</main>
</body>
</html>
`;
}
