/**
 * Renders a {@linkcode ReportModel} as one self-contained HTML page: uPlot's script and style inlined, the
 * downsampled data as JSON in the page, no request to the network. uPlot draws once, without animation. Once
 * every chart is drawn (uPlot's draw hook), the page marks each chart's `<div class="chart">` with `data-box` (its plotting area,
 * `x,y,width,height` in CSS pixels from the top left of the page) and `data-colors` (its colours) and `data-points` (the points it
 * draws), and `<body>` with `data-charts` (the number of charts) and `data-drawn` (those with a point to draw):
 * a test or a script can find them there.
 *
 * @module
 */
import { UPLOT_CSS, UPLOT_JS, UPLOT_VERSION } from "./vendor/uplot.ts";
import { type Chart, GREY, type ReportModel } from "./analyze.ts";

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

/** JSON that can sit inside a `<script>` element. */
const scriptJson = (v: unknown) =>
  JSON.stringify(v).replace(/</g, "\\u003c").replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");

function joules(j: number): string {
  if (!Number.isFinite(j)) return "–";
  const a = Math.abs(j);
  if (a >= 3.6e6) return `${(j / 3.6e6).toPrecision(4)} kWh`;
  if (a >= 1e3) return `${(j / 1e3).toPrecision(4)} kJ`;
  if (a >= 1 || a === 0) return `${j.toPrecision(4)} J`;
  return `${(j * 1e3).toPrecision(4)} mJ`;
}

function watts(w: number): string {
  if (!Number.isFinite(w)) return "–";
  return Math.abs(w) >= 1 || w === 0 ? `${w.toPrecision(4)} W` : `${(w * 1e3).toPrecision(4)} mW`;
}

function duration(s: number): string {
  if (s < 60) return `${s.toFixed(3)} s`;
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return `${h > 0 ? `${h} h ` : ""}${m} min ${sec.toFixed(0)} s (${s.toFixed(1)} s)`;
}

/** `x` with 2 decimals and its sign, `0.00` when it rounds to zero. */
const signed = (x: number) => {
  const t = x.toFixed(2);
  return t === "-0.00" ? "0.00" : x > 0 ? `+${t}` : t;
};

const pct = (part: number, whole: number) => whole > 0 ? `${(100 * part / whole).toFixed(1)} %` : "–";

function table(head: string[], rows: string[][], numeric: boolean[] = []): string {
  const th = head.map((h) => `<th>${escapeHtml(h)}</th>`).join("");
  const tr = rows.map((r) =>
    `<tr>${r.map((c, i) => `<td${numeric[i] ? ' class="num"' : ""}>${escapeHtml(c)}</td>`).join("")}</tr>`
  ).join("\n");
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${tr}\n</tbody></table>`;
}

function chartDivs(charts: readonly Chart[]): string {
  return charts.map((c) =>
    `<figure><figcaption>${escapeHtml(c.title)}</figcaption><div class="chart" id="${c.id}"></div>${
      c.note ? `<p class="note">${escapeHtml(c.note)}</p>` : ""
    }</figure>`
  ).join("\n");
}

/** The page's own script: builds the charts from the JSON in `#report-data`. */
const PAGE_SCRIPT = `
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var done = 0, drawn = 0;
  var width = Math.min(1100, document.querySelector("main").clientWidth);
  // Called by uPlot's draw hook: the plotting area is sized and painted by then. A chart counts as drawn when
  // it has a point to draw (\`data-points\` on its div); once every chart's hook ran, <body> gets data-drawn (the
  // charts with points) and data-charts (all of them): a chart with nothing on it shows as a difference.
  function marker(div, colors, points) {
    return function (u) {
      var r = u.over.getBoundingClientRect();
      div.setAttribute("data-box", [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]
        .map(function (x) { return Math.round(x); }).join(","));
      div.setAttribute("data-colors", colors.join(","));
      if (!div.hasAttribute("data-points")) {
        div.setAttribute("data-points", String(points));
        done++;
        if (points > 0) drawn++;
        if (done === data.charts.length) {
          document.body.setAttribute("data-charts", String(done));
          document.body.setAttribute("data-drawn", String(drawn));
        }
      }
    };
  }
  function finite(values) {
    return values.filter(function (v) { return v !== null && isFinite(v); }).length;
  }
  function lines(c, div) {
    var tables = c.lines.map(function (l) {
      return [l.t.map(function (x) { return data.start + x; }), l.v];
    });
    var aligned = uPlot.join(tables);
    var series = [{}].concat(c.lines.map(function (l) {
      // A line of one or two points is drawn as dots (a single point makes no line).
      return { label: l.label, stroke: l.color, width: 1.5, spanGaps: true,
        points: { show: l.t.length < 3, size: 7, fill: l.color } };
    }));
    new uPlot({
      width: width, height: 300, series: series,
      // Every time chart spans the whole run, so that the charts line up (and a partial line shows as one).
      scales: { x: { time: true, range: [data.start, data.end] } },
      // In UTC, as the summary's start.
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      axes: [{ label: "time (UTC)", labelSize: 20 }, { label: c.unit, size: 70 }],
      legend: { live: false },
      hooks: { draw: [marker(div, c.lines.map(function (l) { return l.color; }),
        c.lines.reduce(function (a, l) { return a + finite(l.v); }, 0))] },
    }, aligned, div);
  }
  function bars(c, div) {
    var n = c.categories.length;
    var xs = c.categories.map(function (_, i) { return i; });
    var main = c.values.map(function (v, i) { return c.highlight[i] ? null : v; });
    var grey = c.values.map(function (v, i) { return c.highlight[i] ? v : null; });
    var path = uPlot.paths.bars({ size: [0.6, 120] });
    var room = (width - 80) / Math.max(1, n); // pixels per bar
    var slanted = room < 110;
    var max = slanted ? 20 : Math.max(6, Math.floor(room / 7));
    new uPlot({
      width: width, height: 300,
      series: [{}, { label: "consumers", fill: c.color, stroke: c.color, paths: path, points: { show: false } },
        { label: "unattributed, other", fill: "${GREY}", stroke: "${GREY}", paths: path, points: { show: false } }],
      scales: { x: { time: false, range: [-0.5, n - 0.5] }, y: { range: function (u, min, max) { return [0, max * 1.1 || 1]; } } },
      // Labels fit their bar's width, turned 45° when many bars leave each little room, and shortened in the
      // middle (the end of a cgroup path or a command tells consumers apart).
      axes: [{ splits: function () { return xs; }, values: function (u, splits) {
        return splits.map(function (i) { var s = c.categories[i] || ""; return s.length > max ? s.slice(0, 7) + "…" + s.slice(s.length - max + 8) : s; });
      }, size: slanted ? 110 : 50, rotate: slanted ? -45 : 0 }, { label: c.unit, size: 70 }],
      legend: { live: false }, cursor: { show: false },
      hooks: { draw: [marker(div, [c.color, "${GREY}"], finite(c.values))] },
    }, [xs, main, grey], div);
  }
  data.charts.forEach(function (c) {
    var div = document.getElementById(c.id);
    if (c.kind === "lines") lines(c, div); else bars(c, div);
  });
  if (data.charts.length === 0) {
    document.body.setAttribute("data-charts", "0");
    document.body.setAttribute("data-drawn", "0");
  }
})();
`;

/** The page, as text. */
export function renderHtml(m: ReportModel, generatedAt: Date = new Date()): string {
  const name = m.input.split("/").pop() ?? m.input;
  const startText = Number.isFinite(m.start) ? new Date(m.start * 1000).toISOString() : "–";
  const summary = table(
    ["", ""],
    [
      ["File", `${m.input} (${m.format})`],
      ["Start (UTC)", startText],
      ["Duration", duration(m.duration)],
      [
        "Rows",
        `${m.rows.toLocaleString("en-US")}${m.malformed > 0 ? ` (${m.malformed} malformed, skipped)` : ""}`,
      ],
      ["Series", String(m.metrics.reduce((a, x) => a + x.series, 0))],
    ],
  );
  const sources = m.sources.length === 0 ? "<p>No energy series.</p>" : table(
    ["Metric", "Domain", "Over", "Energy", "Mean power"],
    m.sources.map((s) => [
      s.metric + (s.estimated ? " (estimate)" : ""),
      s.domain || "–",
      s.what,
      joules(s.joules),
      watts(s.meanWatts),
    ]),
    [false, false, false, true, true],
  );
  const attribution = m.attributions.map((a) => {
    const rows = [
      ...a.rows.map((r) => [r.consumer, joules(r.joules), pct(r.joules, a.total)]),
      ["unattributed", joules(a.unattributed), pct(a.unattributed, a.total)],
      ["total", joules(a.total), "100 %"],
    ];
    const check = a.measured === undefined
      ? "The measured energy at the attributed intervals is not in the file (no unattributed points, or " +
        "not the source's series), so the attribution cannot be checked against it."
      : `Measured by ${a.source} on ${a.measuredOn.join(", ")} at the ${a.intervals} attributed ` +
        `timestamp${a.intervals === 1 ? "" : "s"}: ${joules(a.measured)}; attributed + unattributed: ${
          joules(a.total)
        } (${a.measured > 0 ? `${signed(100 * (a.total - a.measured) / a.measured)} %` : "–"}).`;
    return `<h3>${escapeHtml(a.source)}${a.estimated ? " (estimate)" : ""}${
      a.view === "" ? "" : `, ${escapeHtml(a.view)} view`
    }: ${a.consumers} consumer${a.consumers === 1 ? "" : "s"}</h3>\n${
      table(["Consumer", "Energy", "Share"], rows, [false, true, true])
    }\n<p>${escapeHtml(check)}</p>`;
  }).join("\n");
  const metrics = table(
    ["Metric", "Unit", "Series", "Points"],
    m.metrics.map((x) => [x.name, x.unit || "–", String(x.series), x.points.toLocaleString("en-US")]),
    [false, false, true, true],
  );
  const malformed = m.malformedExamples.length === 0 ? "" : `<h2>Malformed rows</h2>
<p>${m.malformed} row${m.malformed === 1 ? "" : "s"} skipped; the first ones:</p>
${table(["Line", "Why", "Text"], m.malformedExamples.map((x) => [String(x.line), x.reason, x.text]))}`;
  const charts = [...m.powerCharts, ...m.consumerCharts, ...m.programCharts];
  const start = Number.isFinite(m.start) ? m.start : 0;
  const data = { start, end: start + Math.max(m.duration, 1), charts };
  const section = (title: string, cs: readonly Chart[], empty: string) =>
    `<h2>${title}</h2>\n${cs.length > 0 ? chartDivs(cs) : `<p class="note">${escapeHtml(empty)}</p>`}`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Alumet report: ${escapeHtml(name)}</title>
<meta name="generator" content="alumet report (uPlot ${UPLOT_VERSION})">
<style>${UPLOT_CSS}</style>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #fff; }
main { max-width: 1140px; margin: 0 auto; padding: 16px 20px 40px; }
h1 { font-size: 22px; margin: 8px 0 12px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 16px 0 6px; }
table { border-collapse: collapse; margin: 6px 0; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 12px 0 20px; } figcaption { font-weight: 600; margin-bottom: 4px; }
.note { color: #555; } ul.notes li { margin: 4px 0; }
</style>
</head>
<body>
<main>
<h1>Alumet report: ${escapeHtml(name)}</h1>
<p class="note">Generated ${
    escapeHtml(generatedAt.toISOString())
  } by <code>alumet report</code>; charts by uPlot ${
    escapeHtml(UPLOT_VERSION)
  } (MIT), downsampled (each time bucket's lowest and highest point).</p>
${
    m.notes.length > 0
      ? `<ul class="notes">${m.notes.map((n) => `<li>${escapeHtml(n)}</li>`).join("")}</ul>`
      : ""
  }
<h2>Summary</h2>
${summary}
<h3>Energy per source</h3>
${sources}
${section("Power over time", m.powerCharts, m.powerNote)}
${
    section(
      "Energy per consumer",
      m.consumerCharts,
      "No attribution in this run (no attributed_energy points).",
    )
  }
${attribution}
${
    section(
      "CPU and memory of the program",
      m.programCharts,
      "No CPU or memory series of a process or cgroup.",
    )
  }
<h2>Points per metric</h2>
${metrics}
${malformed}
</main>
<script id="report-data" type="application/json">${scriptJson(data)}</script>
<script>${UPLOT_JS}</script>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`;
}
