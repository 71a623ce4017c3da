/**
 * From the series a {@linkcode Collector} gathered to what the page shows: the summary (duration, energy per
 * source, mean power, points per metric), the power charts, the energy per consumer, the program's CPU and
 * memory, and the notes that say what is missing.
 *
 * @module
 */
import type { Collector, Malformed, Series } from "./collect.ts";

/** A line of a chart: times in seconds since the run's first point, values in the chart's unit. */
export interface Line {
  readonly label: string;
  readonly color: string;
  readonly t: number[];
  readonly v: number[];
}

/** A chart of the page. */
export type Chart =
  | {
    readonly kind: "lines";
    readonly id: string;
    readonly title: string;
    readonly unit: string;
    readonly lines: Line[];
    readonly note?: string;
  }
  | {
    readonly kind: "bars";
    readonly id: string;
    readonly title: string;
    readonly unit: string;
    readonly categories: string[];
    /** One value per category; `highlight` marks the categories drawn in grey (unattributed, other). */
    readonly values: number[];
    readonly highlight: boolean[];
    readonly color: string;
    readonly note?: string;
  };

/** A row of the energy-per-source table. */
export interface SourceRow {
  readonly metric: string;
  readonly domain: string;
  readonly what: string;
  readonly joules: number;
  /** Mean power over the series' span, W; NaN with fewer than two points. */
  readonly meanWatts: number;
  readonly estimated: boolean;
}

/**
 * The energy attributed to consumers from one source (a metric and domain) in one view: energy-attribution's
 * `process` and `cgroup` views are two separate attributions of the same joules, never added together.
 */
export interface Attribution {
  readonly source: string;
  /** The attribute `view` (`process`, `cgroup`), "" when the file has none. */
  readonly view: string;
  readonly rows: { readonly consumer: string; readonly joules: number }[];
  readonly unattributed: number;
  /** Σ consumers + unattributed. */
  readonly total: number;
  /**
   * What the source measured on the same resources and domains at the timestamps of the attribution's points
   * (its `unattributed` points: one per interval), when the file has it.
   */
  readonly measured: number | undefined;
  /** The timestamps of the attribution's intervals (those of {@linkcode Attribution.measured}). */
  readonly intervals: number;
  /** The resources of {@linkcode Attribution.measured}. */
  readonly measuredOn: string[];
  readonly estimated: boolean;
  readonly consumers: number;
}

/** Everything the page shows. */
export interface ReportModel {
  readonly input: string;
  readonly format: "csv" | "sqlite";
  readonly rows: number;
  readonly malformed: number;
  readonly malformedExamples: readonly Malformed[];
  /** Seconds since 1970 of the first point (NaN when none). */
  readonly start: number;
  readonly duration: number;
  readonly notes: string[];
  readonly sources: SourceRow[];
  readonly attributions: Attribution[];
  readonly metrics: { name: string; unit: string; points: number; series: number }[];
  readonly powerCharts: Chart[];
  /** What the page says where the power charts would be, when there is none. */
  readonly powerNote: string;
  readonly consumerCharts: Chart[];
  readonly programCharts: Chart[];
}

/** Options of {@linkcode analyze}. */
export interface AnalyzeOptions {
  /** Consumers shown by name in the energy and CPU/memory charts; the rest are summed as `other`. Default 10. */
  readonly top?: number;
  /** Lines per power chart at most (the most energetic). Default 12. */
  readonly maxLines?: number;
}

/** Line colours (Tableau 10, then two darker ones); grey is kept for `unattributed` and `other`. */
export const PALETTE = [
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#ff7f0e",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#17becf",
  "#bcbd22",
  "#393b79",
  "#637939",
  "#843c39",
] as const;
/** The colour of `unattributed` and `other` bars. */
export const GREY = "#9a9a9a";

const isEstimated = (s: Series) => s.attributes.estimated === "true";
const domainOf = (s: Series) => s.attributes.domain ?? "";

function resourceLabel(kind: string, id: string): string {
  if (kind === "local_machine" || kind === "") return "machine";
  return id === "" ? kind : `${kind} ${id}`;
}

function consumerLabel(kind: string, id: string): string {
  if (kind === "local_machine" || kind === "") return "machine";
  if (kind === "unattributed") return "unattributed";
  return id === "" ? kind : `${kind} ${id}`;
}

function lineLabel(s: Series): string {
  const parts: string[] = [];
  const domain = domainOf(s);
  if (domain !== "") parts.push(domain);
  parts.push(resourceLabel(s.resourceKind, s.resourceId));
  if (s.consumerKind !== "local_machine" && s.consumerKind !== "") {
    parts.push(consumerLabel(s.consumerKind, s.consumerId));
  }
  for (const k of ["kind", "cpu_state", "sensor", "power_reading"]) {
    const v = s.attributes[k];
    if (v !== undefined && v !== "") parts.push(v);
  }
  return parts.join(" · ") + (isEstimated(s) ? " (estimate)" : "");
}

/** Mean power of an energy series over its span, W (the first delta covers an unknown interval). */
function meanWatts(s: Series): number {
  const span = s.t1 - s.t0;
  return s.count >= 2 && span > 0 ? (s.sum - (s.first === s.first ? s.first : 0)) / span : NaN;
}

function pointsOf(s: Series, start: number, scale = 1): { t: number[]; v: number[] } {
  const { t, v } = s.sampler!.points();
  return { t: t.map((x) => round(x - start, 3)), v: v.map((x) => sig(x * scale)) };
}

/** The unit of an energy axis whose largest value is `max` J, and its size in J. */
function energyUnit(max: number): [string, number] {
  if (max >= 1e6) return ["MJ", 1e6];
  if (max >= 1e3) return ["kJ", 1e3];
  return ["J", 1];
}

/** `x` rounded to `d` decimals. */
function round(x: number, d: number): number {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

/** `x` with 4 significant digits. */
function sig(x: number): number {
  return x === 0 ? 0 : Number(x.toPrecision(4));
}

/** The model of the page (see the module doc). */
export function analyze(
  c: Collector,
  meta: { input: string; format: "csv" | "sqlite" },
  options: AnalyzeOptions = {},
): ReportModel {
  const top = options.top ?? 10;
  const maxLines = options.maxLines ?? 12;
  const start = c.t0 === Infinity ? NaN : c.t0;
  const duration = c.t1 >= c.t0 ? c.t1 - c.t0 : 0;
  const notes: string[] = [];
  let chartId = 0;
  const nextId = () => `chart${chartId++}`;

  // Energy per source: per metric and domain; a `<domain>_total` series (a sum over sockets) stands for its
  // per-socket series, never added to them.
  c.finish();
  const energy = c.series.filter((s) => s.metric.role === "energy" && !s.idle);
  const idleStates = [
    ...new Set(c.series.filter((s) => s.idle).map((s) => s.attributes.cpu_state!)),
  ];
  if (idleStates.length > 0) {
    notes.push(
      `The energy of idle CPU states (cpu_state ${
        idleStates.join(", ")
      }) is left out, as in exec's summary: ` +
        "an estimate for idle time is not the machine's use. The busy states' series are shown merged " +
        "(cpu_state busy).",
    );
  }
  const groups = new Map<string, { metric: string; domain: string; totals: Series[]; parts: Series[] }>();
  for (const s of energy) {
    const d = domainOf(s);
    const total = d.endsWith("_total");
    const domain = total ? d.slice(0, -"_total".length) : d;
    const key = `${s.metric.name}\0${domain}`;
    let g = groups.get(key);
    if (g === undefined) groups.set(key, g = { metric: s.metric.name, domain, totals: [], parts: [] });
    (total ? g.totals : g.parts).push(s);
  }
  const sources: SourceRow[] = [];
  for (const g of groups.values()) {
    const used = g.totals.length > 0 ? g.totals : g.parts;
    const joules = used.reduce((a, s) => a + s.sum, 0);
    const watts = used.reduce((a, s) => a + meanWatts(s), 0);
    const resources = new Set(g.parts.map((s) => resourceLabel(s.resourceKind, s.resourceId)));
    const what = g.totals.length > 0
      ? `the ${g.domain}_total series (sum over ${resources.size || "the"} socket${
        resources.size === 1 ? "" : "s"
      })`
      : [...resources].join(", ");
    const states = [...new Set(used.flatMap((s) => s.states ?? []))];
    sources.push({
      metric: g.metric,
      domain: g.domain,
      what: states.length > 0 ? `${what} (busy CPU states: ${states.join(", ")})` : what,
      joules,
      meanWatts: watts,
      estimated: used.some(isEstimated),
    });
  }
  sources.sort((a, b) => b.joules - a.joules);
  const powerSeries = c.series.filter((s) => s.metric.role === "power");
  if (energy.length === 0 && powerSeries.length === 0) {
    notes.push(
      "This run has no energy series (no metric in J or Wh, such as rapl_consumed_energy, nor a power in W): " +
        "there is no power chart. On a machine without RAPL, the energy-estimation-tdp plugin estimates it.",
    );
  }

  // Power over time: one chart per metric, a line per domain and device.
  const powerCharts: Chart[] = [];
  const byMetric = new Map<string, Series[]>();
  for (const s of [...energy, ...powerSeries]) {
    const list = byMetric.get(s.metric.name) ?? [];
    list.push(s);
    byMetric.set(s.metric.name, list);
  }
  for (const [name, list] of byMetric) {
    const weight = (s: Series) => s.metric.role === "energy" ? s.sum : s.sum / Math.max(1, s.count);
    const shown = [...list].sort((a, b) => weight(b) - weight(a)).slice(0, maxLines);
    const lines = shown.map((s, i) => ({
      label: lineLabel(s),
      color: PALETTE[i % PALETTE.length]!,
      ...pointsOf(s, start),
    })).filter((l) => l.t.length > 0);
    if (lines.length === 0) continue;
    const derived = list[0]!.metric.role === "energy";
    const omitted = list.length - shown.length;
    powerCharts.push({
      kind: "lines",
      id: nextId(),
      title: `Power: ${name}${derived ? " (energy ÷ interval)" : ""}`,
      unit: "W",
      lines,
      ...(omitted > 0
        ? { note: `${omitted} more series not drawn (the ${maxLines} most energetic are)` }
        : {}),
    });
  }

  const powerNote = powerCharts.length > 0 || energy.length + powerSeries.length === 0
    ? "No energy or power series to chart."
    : "This run is too short for power over time: its energy series have one point each (a power is the " +
      "energy between two points). Their energy is in the summary above.";

  // Energy per consumer, from attributed_energy, per source metric and domain.
  const attributed = c.series.filter((s) => s.metric.role === "attributed" && !s.idle);
  const attributions: Attribution[] = [];
  const consumerCharts: Chart[] = [];
  if (attributed.length === 0) {
    notes.push(
      "No attribution in this run: no attributed_energy points, so no energy per consumer " +
        "(enable the energy-attribution plugin with an energy source and procfs or cgroups).",
    );
  } else {
    // Per view, source metric and domain: each view shares the same joules (never summed across views).
    const bySource = new Map<string, Series[]>();
    for (const s of attributed) {
      const d = domainOf(s).replace(/_total$/, "");
      const key = `${s.attributes.view ?? ""}\0${s.attributes.source_metric ?? "energy"}\0${d}`;
      const list = bySource.get(key) ?? [];
      list.push(s);
      bySource.set(key, list);
    }
    // The process view first (and a file without views), then the cgroup view, then any other.
    const viewRank = (key: string) => ["", "process", "cgroup"].indexOf(key.split("\0")[0]!) >>> 0;
    const keys = [...bySource.keys()].sort((a, b) => viewRank(a) - viewRank(b));
    for (const key of keys) {
      const list = bySource.get(key)!;
      const [view, metric, domain] = key.split("\0") as [string, string, string];
      const perConsumer = new Map<string, number>();
      let unattributed = 0;
      for (const s of list) {
        if (s.consumerKind === "unattributed") unattributed += s.sum;
        else {
          const label = consumerLabel(s.consumerKind, s.consumerId);
          perConsumer.set(label, (perConsumer.get(label) ?? 0) + s.sum);
        }
      }
      const ranked = [...perConsumer].sort((a, b) => b[1] - a[1]);
      // `other` sums two consumers or more: one more is shown by name instead.
      const named = ranked.length === top + 1 ? top + 1 : top;
      const rows = ranked.slice(0, named).map(([consumer, joules]) => ({ consumer, joules }));
      const rest = ranked.slice(named);
      if (rest.length > 0) {
        rows.push({
          consumer: `other (${rest.length} consumer${rest.length === 1 ? "" : "s"})`,
          joules: rest.reduce((a, r) => a + r[1], 0),
        });
      }
      const total = ranked.reduce((a, r) => a + r[1], 0) + unattributed;
      const source = domain === "" ? metric : `${metric} ${domain}`;
      const estimated = list.some(isEstimated);
      // The conservation check: what the source measured on the same resources, domains and timestamps as
      // the attribution's points (energy-attribution gives every interval an `unattributed` point, even 0;
      // the source's first point, a baseline, has none).
      const target = (s: Series) =>
        `${s.resourceKind}\0${s.resourceId}\0${domainOf(s)}\0${s.attributes.cpu_state ?? ""}`;
      const intervals = new Map<string, Set<number>>();
      for (const s of list) {
        if (s.log === undefined) continue;
        const set = intervals.get(target(s)) ?? new Set<number>();
        for (let i = 0; i < s.log.n; i++) set.add(s.log.t[i]!);
        intervals.set(target(s), set);
      }
      const measuredSeries = energy.filter((s) => s.metric.name === metric && intervals.has(target(s)));
      let measured = 0;
      for (const s of measuredSeries) {
        const times = intervals.get(target(s))!;
        for (let i = 0; i < s.log!.n; i++) if (times.has(s.log!.t[i]!)) measured += s.log!.v[i]!;
      }
      const allTimes = new Set<number>();
      for (const set of intervals.values()) for (const t of set) allTimes.add(t);
      attributions.push({
        source,
        view,
        rows,
        unattributed,
        total,
        measured: measuredSeries.length === 0 ? undefined : measured,
        intervals: allTimes.size,
        measuredOn: [...new Set(measuredSeries.map((s) => resourceLabel(s.resourceKind, s.resourceId)))],
        estimated,
        consumers: ranked.length,
      });
      const categories = [...rows.map((r) => r.consumer), "unattributed"];
      const values = [...rows.map((r) => r.joules), unattributed];
      const [unit, scale] = energyUnit(Math.max(...values.map(Math.abs)));
      consumerCharts.push({
        kind: "bars",
        id: nextId(),
        title: `Energy per ${view === "" ? "consumer" : view}: ${source}${estimated ? " (estimate)" : ""}`,
        unit,
        categories,
        values: values.map((v) => sig(v / scale)),
        highlight: categories.map((cat) => cat === "unattributed" || cat.startsWith("other (")),
        color: PALETTE[0],
      });
    }
  }

  // The program: CPU and memory of processes and cgroups, top N.
  const programCharts: Chart[] = [];
  const programChart = (
    role: "cpu" | "memory",
    prefer: string,
    title: string,
    unit: string,
    scale: number,
  ) => {
    const all = c.series.filter((s) =>
      s.metric.role === role && s.consumerKind !== "local_machine" && s.consumerKind !== "" && s.sampler
    );
    if (all.length === 0) return false;
    const byConsumer = new Map<string, Series[]>();
    for (const s of all) {
      const k = consumerLabel(s.consumerKind, s.consumerId);
      byConsumer.set(k, [...byConsumer.get(k) ?? [], s]);
    }
    const chosen: Series[] = [];
    for (const list of byConsumer.values()) {
      const preferred = list.filter((s) => s.attributes.kind === prefer);
      chosen.push(...(preferred.length > 0 ? preferred : list));
    }
    const mean = (s: Series) => s.sum / Math.max(1, s.count);
    chosen.sort((a, b) => mean(b) - mean(a));
    const shown = chosen.slice(0, top);
    programCharts.push({
      kind: "lines",
      id: nextId(),
      title,
      unit,
      lines: shown.map((s, i) => ({
        label: lineLabel(s),
        color: PALETTE[i % PALETTE.length]!,
        ...pointsOf(s, start, scale),
      })),
      ...(chosen.length > shown.length
        ? {
          note: `${chosen.length - shown.length} more series not drawn (the ${top} highest on average are)`,
        }
        : {}),
    });
    return true;
  };
  const cpu = programChart("cpu", "total", "CPU of the program (cpu_percent, share of the machine)", "%", 1);
  const mem = programChart("memory", "resident", "Memory of the program (memory_usage)", "MiB", 1 / 2 ** 20);
  if (!cpu && !mem) {
    notes.push(
      "No CPU or memory series of a process or cgroup (cpu_percent, memory_usage): measure a program with " +
        "`alumet exec` and the procfs plugin.",
    );
  }
  if (c.malformedCount > 0) {
    notes.push(
      `${c.malformedCount} malformed row${c.malformedCount === 1 ? " was" : "s were"} skipped (see below).`,
    );
  }
  if (c.series.length === 0) notes.push("The file has no points.");

  const counts = new Map<string, { name: string; unit: string; points: number; series: number }>();
  for (const s of c.series) {
    const k = `${s.metric.name}\0${s.metric.unit}`;
    const e = counts.get(k) ?? { name: s.metric.name, unit: s.metric.unit, points: 0, series: 0 };
    e.points += s.count;
    e.series++;
    counts.set(k, e);
  }
  const metrics = [...counts.values()].sort((a, b) => a.name.localeCompare(b.name));

  return {
    input: meta.input,
    format: meta.format,
    rows: c.rows,
    malformed: c.malformedCount,
    malformedExamples: c.malformedExamples,
    start,
    duration,
    notes,
    sources,
    attributions,
    metrics,
    powerCharts,
    powerNote,
    consumerCharts,
    programCharts,
  };
}
