/**
 * A small SVG scatter plot (one metric against one parameter), with no charting library: the
 * scales (linear, logarithmic, or one band per category), their ticks, and the drawing. Points
 * that share the values of the other parameters are one series, joined by a line.
 */

import { pyValue } from './cellsync';

const SVG = 'http://www.w3.org/2000/svg';

/** A value axis: where a value goes on screen, and the ticks to label it with. */
export interface IScale {
  kind: 'linear' | 'log' | 'band';
  /** The position of `value` (a number for linear/log, any value for band), or null when it has none. */
  at(value: any): number | null;
  ticks(): { value: any; label: string }[];
}

/** A number in few characters: `0.001`, `1e-5`, `12.5`, `3.2e+6`. */
export function shortNumber(value: number): string {
  if (!Number.isFinite(value)) {
    return String(value);
  }
  if (value === 0) {
    return '0';
  }
  const abs = Math.abs(value);
  if (abs >= 1e5 || abs < 1e-4) {
    return value.toExponential(1).replace('.0e', 'e');
  }
  return String(Number(value.toPrecision(4)));
}

/** Round tick values (1, 2 or 5 times a power of ten) spanning [min, max], about `count` of them. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) {
    return [];
  }
  if (min === max) {
    return [min];
  }
  if (min > max) {
    [min, max] = [max, min];
  }
  const raw = (max - min) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map(m => m * power).find(s => s >= raw) ?? 10 * power;
  const ticks: number[] = [];
  for (let i = Math.ceil(min / step); i * step <= max + step * 1e-9; i++) {
    ticks.push(Number((i * step).toPrecision(12)));
  }
  return ticks;
}

/** `values` onto [from, to] in proportion, the domain padded so no point sits on the frame. */
export function linearScale(values: readonly number[], from: number, to: number): IScale {
  const finite = values.filter(Number.isFinite);
  let lo = finite.length ? Math.min(...finite) : 0;
  let hi = finite.length ? Math.max(...finite) : 1;
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  } else {
    const pad = (hi - lo) * 0.06;
    lo -= pad;
    hi += pad;
  }
  const at = (v: any) =>
    typeof v === 'number' && Number.isFinite(v)
      ? from + ((v - lo) / (hi - lo)) * (to - from)
      : null;
  return {
    kind: 'linear',
    at,
    ticks: () => niceTicks(lo, hi).map(v => ({ value: v, label: shortNumber(v) }))
  };
}

/** Positive `values` onto [from, to] by their logarithm (powers of ten as ticks). */
export function logScale(values: readonly number[], from: number, to: number): IScale {
  const logs = values.filter(v => Number.isFinite(v) && v > 0).map(Math.log10);
  let lo = logs.length ? Math.min(...logs) : 0;
  let hi = logs.length ? Math.max(...logs) : 1;
  if (lo === hi) {
    lo -= 0.5;
    hi += 0.5;
  } else {
    const pad = (hi - lo) * 0.06;
    lo -= pad;
    hi += pad;
  }
  const at = (v: any) =>
    typeof v === 'number' && Number.isFinite(v) && v > 0
      ? from + ((Math.log10(v) - lo) / (hi - lo)) * (to - from)
      : null;
  const ticks = () => {
    const out: { value: number; label: string }[] = [];
    for (let p = Math.ceil(lo); p <= Math.floor(hi); p++) {
      const value = Number((10 ** p).toPrecision(12));
      out.push({ value, label: shortNumber(value) });
    }
    return out;
  };
  return { kind: 'log', at, ticks };
}

/** One band per distinct value (in the order given), each value at its band's middle. */
export function bandScale(values: readonly any[], from: number, to: number): IScale {
  const keys: string[] = [];
  const shown: any[] = [];
  for (const v of values) {
    const key = JSON.stringify(v ?? null);
    if (!keys.includes(key)) {
      keys.push(key);
      shown.push(v);
    }
  }
  const width = (to - from) / Math.max(1, keys.length);
  return {
    kind: 'band',
    at: (v: any) => {
      const i = keys.indexOf(JSON.stringify(v ?? null));
      return i < 0 ? null : from + width * (i + 0.5);
    },
    ticks: () => shown.map(v => ({ value: v, label: axisLabel(v) }))
  };
}

/** A value as an axis labels it: numbers short, strings as they are, the rest as Python writes it. */
export function axisLabel(value: any): string {
  if (typeof value === 'number') {
    return shortNumber(value);
  }
  return typeof value === 'string' ? value : pyValue(value);
}

/**
 * The scale that suits `values`: a band per value unless all are numbers; numbers spread over
 * two orders of magnitude or more (all positive, three or more distinct: lr=0.1,0.01,0.001) on
 * a logarithmic scale, others on a linear one.
 */
export function chooseScale(values: readonly any[], from: number, to: number): IScale {
  const present = values.filter(v => v !== null && v !== undefined);
  const numeric =
    present.length > 0 && present.every(v => typeof v === 'number' && Number.isFinite(v));
  if (!numeric) {
    return bandScale(present, from, to);
  }
  const distinct = new Set(present as number[]);
  const min = Math.min(...distinct);
  const max = Math.max(...distinct);
  if (min > 0 && distinct.size >= 3 && max / min >= 100) {
    return logScale(present as number[], from, to);
  }
  return linearScale(present as number[], from, to);
}

/** One point of the plot. */
export interface IPlotPoint {
  /** What identifies it (a child job's id): passed to `onPoint`, kept in `data-job`. */
  id: string;
  x: any;
  y: number;
  /** Points of one series are joined by a line (in x order). */
  series: string;
  /** The tooltip. */
  title: string;
  best?: boolean;
}

export interface IPlotOptions {
  width?: number;
  height?: number;
  xLabel: string;
  yLabel: string;
  /** A click on (or Enter on) a point. */
  onPoint?: (id: string) => void;
}

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: { [key: string]: string | number } = {},
  text?: string
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    node.setAttribute(key, String(value));
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** The margins around the plot's frame: room for tick labels and axis titles. */
const MARGIN = { left: 64, right: 16, top: 12, bottom: 44 };

/** The series a plot shows, in order of first appearance (their colour is their index). */
export function seriesOf(points: readonly IPlotPoint[]): string[] {
  const names: string[] = [];
  for (const p of points) {
    if (!names.includes(p.series)) {
      names.push(p.series);
    }
  }
  return names;
}

/**
 * The plot as an `<svg>`: axes with ticks and titles, a line per series, a circle per point
 * (`data-testid="jupyter-ext-sweep-point"`, its series' colour, the best one ringed).
 */
export function renderPlot(points: readonly IPlotPoint[], options: IPlotOptions): SVGSVGElement {
  const width = options.width ?? 560;
  const height = options.height ?? 300;
  const left = MARGIN.left;
  const right = width - MARGIN.right;
  const top = MARGIN.top;
  const bottom = height - MARGIN.bottom;
  const root = svg('svg', {
    class: 'jp-ext-Plot',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img'
  });
  root.setAttribute('aria-label', `${options.yLabel} against ${options.xLabel}`);
  const x = chooseScale(
    points.map(p => p.x),
    left,
    right
  );
  const y = linearScale(
    points.map(p => p.y),
    bottom,
    top
  );
  root.dataset.xScale = x.kind;
  const axes = svg('g', { class: 'jp-ext-Plot-axes' });
  axes.append(
    svg('line', { x1: left, y1: bottom, x2: right, y2: bottom, class: 'jp-ext-Plot-axis' }),
    svg('line', { x1: left, y1: top, x2: left, y2: bottom, class: 'jp-ext-Plot-axis' })
  );
  for (const tick of x.ticks()) {
    const at = x.at(tick.value);
    if (at === null) {
      continue;
    }
    axes.append(
      svg('line', { x1: at, y1: bottom, x2: at, y2: bottom + 4, class: 'jp-ext-Plot-axis' }),
      svg('text', { x: at, y: bottom + 16, 'text-anchor': 'middle' }, tick.label)
    );
  }
  for (const tick of y.ticks()) {
    const at = y.at(tick.value);
    if (at === null) {
      continue;
    }
    axes.append(
      svg('line', { x1: left, y1: at, x2: right, y2: at, class: 'jp-ext-Plot-grid' }),
      svg('text', { x: left - 6, y: at + 4, 'text-anchor': 'end' }, tick.label)
    );
  }
  axes.append(
    svg(
      'text',
      { x: (left + right) / 2, y: height - 6, 'text-anchor': 'middle', class: 'jp-ext-Plot-title' },
      options.xLabel + (x.kind === 'log' ? ' (log scale)' : '')
    ),
    svg(
      'text',
      {
        x: 14,
        y: (top + bottom) / 2,
        'text-anchor': 'middle',
        transform: `rotate(-90 14 ${(top + bottom) / 2})`,
        class: 'jp-ext-Plot-title'
      },
      options.yLabel
    )
  );
  root.append(axes);
  const series = seriesOf(points);
  const placed = points
    .map(p => ({ p, cx: x.at(p.x), cy: y.at(p.y) }))
    .filter((q): q is { p: IPlotPoint; cx: number; cy: number } => q.cx !== null && q.cy !== null);
  for (const [i, name] of series.entries()) {
    const line = placed.filter(q => q.p.series === name).sort((a, b) => a.cx - b.cx);
    if (line.length > 1) {
      root.append(
        svg('polyline', {
          class: `jp-ext-Plot-line jp-ext-Plot-series${i % 8}`,
          points: line.map(q => `${q.cx.toFixed(1)},${q.cy.toFixed(1)}`).join(' ')
        })
      );
    }
  }
  for (const { p, cx, cy } of placed) {
    const i = series.indexOf(p.series);
    const dot = svg('circle', {
      cx: cx.toFixed(1),
      cy: cy.toFixed(1),
      r: p.best ? 6 : 4.5,
      class: `jp-ext-Plot-point jp-ext-Plot-series${i % 8}${p.best ? ' jp-mod-best' : ''}`,
      tabindex: 0,
      role: 'button'
    });
    dot.dataset.testid = 'jupyter-ext-sweep-point';
    dot.dataset.job = p.id;
    if (p.best) {
      dot.dataset.best = 'true';
    }
    dot.setAttribute('aria-label', p.title);
    dot.append(svg('title', {}, p.title));
    if (options.onPoint) {
      const open = options.onPoint;
      dot.addEventListener('click', () => open(p.id));
      dot.addEventListener('keydown', event => {
        if ((event as KeyboardEvent).key === 'Enter') {
          open(p.id);
        }
      });
    }
    root.append(dot);
  }
  return root;
}
