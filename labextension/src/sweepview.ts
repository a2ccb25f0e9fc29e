/**
 * A sweep job in its job view: a sortable table of its children (each swept parameter, each
 * metric, status, duration), the best child for a chosen metric (lowest or highest), and a plot
 * of that metric against a chosen parameter. A row (or a point) opens that child like any job.
 *
 * The sorting, the best child and the series of the plot are pure functions, tested alone.
 */

import { Widget } from '@lumino/widgets';
import { pyValue } from './cellsync';
import { el, statusBadge } from './dom';
import { formatSeconds } from './jobstate';
import { IPlotPoint, renderPlot, seriesOf } from './plot';
import { ISweep, ISweepChild, TERMINAL } from './tokens';

/** A run's duration: tenths under 10 s (runs of a sweep are often short: 0.9s, not 1s or 0s). */
export function runSeconds(seconds: number): string {
  return seconds < 9.95 ? `${Math.max(0, seconds).toFixed(1)}s` : formatSeconds(seconds);
}
/** A column of the table: a swept parameter, a metric, the status or the duration. */
export interface IColumn {
  key: string;
  kind: 'param' | 'metric' | 'status' | 'duration';
  /** The parameter's or metric's name; the column's title otherwise. */
  name: string;
}

export type SortDirection = 'asc' | 'desc';
export type Goal = 'min' | 'max';

/** The table's columns: parameters in the order swept, metrics in the order first logged. */
export function sweepColumns(sweep: Pick<ISweep, 'parameters' | 'metrics'>): IColumn[] {
  return [
    ...sweep.parameters.map(name => ({ key: `param:${name}`, kind: 'param' as const, name })),
    ...sweep.metrics.map(name => ({ key: `metric:${name}`, kind: 'metric' as const, name })),
    { key: 'status', kind: 'status', name: 'status' },
    { key: 'duration', kind: 'duration', name: 'duration' }
  ];
}

/** What a child has in `column` (undefined: nothing, e.g. a metric not logged yet). */
export function columnValue(child: ISweepChild, column: IColumn): any {
  switch (column.kind) {
    case 'param':
      return child.parameters?.[column.name];
    case 'metric':
      return child.metrics?.[column.name];
    case 'status':
      return child.status;
    case 'duration':
      return child.duration ?? undefined;
  }
}

function missing(v: any): boolean {
  return v === undefined || v === null || (typeof v === 'number' && Number.isNaN(v));
}

/**
 * Order of two cell values, ascending: numbers by value (so 10 after 9), before strings
 * (compared with their numbers as numbers: `run2` before `run10`); booleans as 0/1; anything
 * else by its Python text.
 */
export function compareValues(a: any, b: any): number {
  const num = (v: any) => (typeof v === 'boolean' ? Number(v) : v);
  const x = num(a);
  const y = num(b);
  const xn = typeof x === 'number';
  const yn = typeof y === 'number';
  if (xn && yn) {
    return x === y ? 0 : x < y ? -1 : 1;
  }
  if (xn !== yn) {
    return xn ? -1 : 1;
  }
  const xs = typeof x === 'string' ? x : pyValue(x);
  const ys = typeof y === 'string' ? y : pyValue(y);
  return xs.localeCompare(ys, undefined, { numeric: true });
}

/**
 * The children sorted by `column`, ascending or descending; those without a value in it stay
 * last either way; ties keep the server's order (the order the sweep made them).
 */
export function sortChildren(
  children: readonly ISweepChild[],
  column: IColumn | null,
  direction: SortDirection = 'asc'
): ISweepChild[] {
  const indexed = children.map((child, index) => ({ child, index }));
  if (!column) {
    return indexed.map(i => i.child);
  }
  const sign = direction === 'asc' ? 1 : -1;
  indexed.sort((a, b) => {
    const x = columnValue(a.child, column);
    const y = columnValue(b.child, column);
    if (missing(x) || missing(y)) {
      return missing(x) === missing(y) ? a.index - b.index : missing(x) ? 1 : -1;
    }
    return sign * compareValues(x, y) || a.index - b.index;
  });
  return indexed.map(i => i.child);
}

/** The child with the lowest (`min`) or highest (`max`) value of `metric`; null when none has one. */
export function bestChild(
  children: readonly ISweepChild[],
  metric: string | null,
  goal: Goal
): ISweepChild | null {
  if (!metric) {
    return null;
  }
  let best: ISweepChild | null = null;
  for (const child of children) {
    const value = child.metrics?.[metric];
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      continue;
    }
    const current = best?.metrics[metric];
    if (best === null || (goal === 'min' ? value < current! : value > current!)) {
      best = child;
    }
  }
  return best;
}

/** Whether lower is better for a metric, by its name: losses, errors, times. */
export function defaultGoal(metric: string): Goal {
  return /loss|err|mse|mae|rmse|perplexity|time|latency|duration|cost/i.test(metric)
    ? 'min'
    : 'max';
}

/** A value in a table cell: numbers short, strings as they are, the rest as Python writes it. */
export function cellText(value: any): string {
  if (missing(value)) {
    return '–';
  }
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(6)));
  }
  return typeof value === 'string' ? value : pyValue(value);
}

/**
 * The plot's points: each child with a value of `metric`, at its value of `param`; children
 * that share the other swept parameters' values are one series (`depth=3`).
 */
export function plotPoints(
  sweep: Pick<ISweep, 'parameters' | 'children'>,
  metric: string,
  param: string,
  best: ISweepChild | null = null
): IPlotPoint[] {
  const others = sweep.parameters.filter(p => p !== param);
  const points: IPlotPoint[] = [];
  for (const child of sweep.children) {
    const y = child.metrics?.[metric];
    const x = child.parameters?.[param];
    if (typeof y !== 'number' || !Number.isFinite(y) || missing(x)) {
      continue;
    }
    const series = others.map(o => `${o}=${pyValue(child.parameters?.[o])}`).join(', ');
    const where = sweep.parameters.map(p => `${p}=${pyValue(child.parameters?.[p])}`).join(', ');
    points.push({
      id: child.id,
      x,
      y,
      series,
      title: `${where}: ${metric} = ${cellText(y)} (${child.status.replace('_', ' ')})`,
      best: best?.id === child.id
    });
  }
  return points;
}

/** How many of a sweep's children ended, of how many. */
export function sweepProgress(sweep: Pick<ISweep, 'children' | 'counts'>): {
  done: number;
  total: number;
  failed: number;
} {
  const counts = sweep.counts ?? {};
  const fromCounts = Object.values(counts).reduce<number>((a, b) => a + (b ?? 0), 0);
  const total = Math.max(fromCounts, sweep.children?.length ?? 0);
  const done = (counts.succeeded ?? 0) + (counts.failed ?? 0) + (counts.cancelled ?? 0);
  return { done, total, failed: counts.failed ?? 0 };
}

/**
 * Each swept parameter's values, as the children ran them: a grid's distinct values, a zip's
 * values in order (what a re-run of the sweep submits again).
 */
export function sweepValues(sweep: Pick<ISweep, 'parameters' | 'children' | 'mode'>): {
  [name: string]: any[];
} {
  const values: { [name: string]: any[] } = {};
  for (const name of sweep.parameters) {
    const seen: any[] = [];
    const keys = new Set<string>();
    for (const child of sweep.children) {
      const v = child.parameters?.[name];
      const key = JSON.stringify(v ?? null);
      if (sweep.mode === 'zip' || !keys.has(key)) {
        keys.add(key);
        seen.push(v);
      }
    }
    values[name] = seen;
  }
  return values;
}

/** What a sweep runs, in words: `6 runs · grid over lr, depth · 4 at a time`. */
export function sweepSummary(sweep: ISweep): string {
  const { done, total, failed } = sweepProgress(sweep);
  const running = sweep.counts?.running ?? 0;
  return [
    `${total} run${total === 1 ? '' : 's'}`,
    `${sweep.mode === 'zip' ? 'zip of' : 'grid over'} ${sweep.parameters.join(', ')}`,
    sweep.parallel ? `${sweep.parallel} at a time` : '',
    `${done}/${total} done`,
    running ? `${running} running` : '',
    failed ? `${failed} failed` : ''
  ]
    .filter(Boolean)
    .join(' · ');
}

function option(value: string, label: string, selected: boolean): HTMLOptionElement {
  const node = el('option', '', label);
  node.value = value;
  node.selected = selected;
  return node;
}

/** The sweep part of a sweep job's view. */
export class SweepView extends Widget {
  private sweep: ISweep | null = null;
  private shownText = '';
  private sortKey: string | null = null;
  private sortDir: SortDirection = 'asc';
  private metric: string | null = null;
  private goal: Goal | null = null;
  private param: string | null = null;
  private readonly summary = el('div', 'jp-ext-SweepView-summary');
  private readonly metricSelect = el('select', 'jp-mod-styled');
  private readonly goalButton = el('button', 'jp-Button jp-mod-styled jp-mod-reject');
  private readonly paramSelect = el('select', 'jp-mod-styled');
  private readonly bestLine = el('div', 'jp-ext-SweepView-best');
  private readonly table = el('table', 'jp-ext-SweepView-table');
  private readonly plotHost = el('div', 'jp-ext-SweepView-plot');
  private readonly legend = el('ul', 'jp-ext-SweepView-legend');

  /** `openJob`: show a child's own job view. */
  constructor(private readonly openJob: (id: string) => void) {
    super();
    this.addClass('jp-ext-SweepView');
    this.node.dataset.testid = 'jupyter-ext-sweep';
    this.summary.dataset.testid = 'jupyter-ext-sweep-summary';
    const controls = el('div', 'jp-ext-SweepView-controls');
    const metricLabel = el('label', 'jp-ext-SweepView-control');
    this.metricSelect.dataset.testid = 'jupyter-ext-sweep-metric';
    this.metricSelect.onchange = () => {
      this.metric = this.metricSelect.value || null;
      this.goal = null; // the new metric's own default
      this.render();
    };
    metricLabel.append(el('span', '', 'Metric'), this.metricSelect);
    this.goalButton.type = 'button';
    this.goalButton.dataset.testid = 'jupyter-ext-sweep-goal';
    this.goalButton.onclick = () => {
      this.goal = this.currentGoal() === 'min' ? 'max' : 'min';
      this.render();
    };
    const paramLabel = el('label', 'jp-ext-SweepView-control');
    this.paramSelect.dataset.testid = 'jupyter-ext-sweep-x';
    this.paramSelect.onchange = () => {
      this.param = this.paramSelect.value || null;
      this.render();
    };
    paramLabel.append(el('span', '', 'Plot against'), this.paramSelect);
    controls.append(metricLabel, this.goalButton, paramLabel);
    this.bestLine.dataset.testid = 'jupyter-ext-sweep-best';
    this.table.dataset.testid = 'jupyter-ext-sweep-table';
    this.plotHost.dataset.testid = 'jupyter-ext-sweep-plot';
    const results = el('div', 'jp-ext-SweepView-results');
    const tableBox = el('div', 'jp-ext-SweepView-tableBox');
    tableBox.append(this.table);
    const plotBox = el('div', 'jp-ext-SweepView-plotBox');
    plotBox.append(this.plotHost, this.legend);
    results.append(tableBox, plotBox);
    this.node.append(this.summary, controls, this.bestLine, results);
  }

  /** The metric the best child and the plot are about (null: none logged yet). */
  get chosenMetric(): string | null {
    const metrics = this.sweep?.metrics ?? [];
    return this.metric && metrics.includes(this.metric) ? this.metric : (metrics[0] ?? null);
  }

  /** The parameter the plot's x axis shows. */
  get chosenParam(): string | null {
    const params = this.sweep?.parameters ?? [];
    return this.param && params.includes(this.param) ? this.param : (params[0] ?? null);
  }

  /** Show the sweep as it is now (called on every fetch of the sweep job). */
  showSweep(sweep: ISweep): void {
    // Not redrawn when nothing changed (a row under the pointer stays the same element).
    const text = JSON.stringify(sweep);
    if (text === this.shownText) {
      return;
    }
    this.shownText = text;
    this.sweep = sweep;
    this.render();
  }

  /** Sort by a column: ascending first, then descending on a second click. */
  sortBy(key: string): void {
    if (this.sortKey === key) {
      this.sortDir = this.sortDir === 'asc' ? 'desc' : 'asc';
    } else {
      this.sortKey = key;
      this.sortDir = 'asc';
    }
    this.render();
  }

  private currentGoal(): Goal {
    const metric = this.chosenMetric;
    return this.goal ?? (metric ? defaultGoal(metric) : 'min');
  }

  private render(): void {
    const sweep = this.sweep;
    if (!sweep) {
      return;
    }
    const metric = this.chosenMetric;
    const param = this.chosenParam;
    const goal = this.currentGoal();
    this.summary.textContent = sweepSummary(sweep);
    this.node.dataset.done = String(sweepProgress(sweep).done);
    this.metricSelect.replaceChildren(
      ...(sweep.metrics.length
        ? sweep.metrics.map(m => option(m, m, m === metric))
        : [option('', 'no metrics yet', true)])
    );
    this.metricSelect.disabled = !sweep.metrics.length;
    this.paramSelect.replaceChildren(...sweep.parameters.map(p => option(p, p, p === param)));
    this.goalButton.textContent = goal === 'min' ? 'Best: lowest' : 'Best: highest';
    this.goalButton.dataset.goal = goal;
    this.goalButton.title =
      'Whether the best run has the lowest or the highest value (click to switch)';
    this.goalButton.disabled = !metric;
    const best = bestChild(sweep.children, metric, goal);
    this.renderBest(best, metric, goal);
    this.renderTable(sweep, best, metric);
    this.renderPlot(sweep, best, metric, param);
  }

  private renderBest(best: ISweepChild | null, metric: string | null, goal: Goal): void {
    this.bestLine.replaceChildren();
    if (!metric) {
      this.bestLine.textContent =
        'No metrics yet: a cell logs one with jupyter_ext.log_metric(name, value).';
      return;
    }
    if (!best) {
      this.bestLine.textContent = `No run has logged ${metric} yet.`;
      return;
    }
    const where = Object.entries(best.parameters)
      .map(([k, v]) => `${k}=${pyValue(v)}`)
      .join(', ');
    const open = el('button', 'jp-ext-SweepView-open', `${best.name}`);
    open.type = 'button';
    open.dataset.testid = 'jupyter-ext-sweep-open-best';
    open.dataset.job = best.id;
    open.onclick = () => this.openJob(best.id);
    this.bestLine.append(
      `★ Best ${metric} (${goal === 'min' ? 'lowest' : 'highest'}): ${cellText(best.metrics[metric])} with ${where} — `,
      open
    );
  }

  private renderTable(sweep: ISweep, best: ISweepChild | null, metric: string | null): void {
    const columns = sweepColumns(sweep);
    const column = columns.find(c => c.key === this.sortKey) ?? null;
    const head = el('thead', '');
    const headRow = el('tr', '');
    headRow.append(el('th', 'jp-ext-SweepView-mark'));
    for (const c of columns) {
      const th = el('th', `jp-ext-SweepView-${c.kind}`);
      const sorted = c.key === this.sortKey;
      th.setAttribute(
        'aria-sort',
        sorted ? (this.sortDir === 'asc' ? 'ascending' : 'descending') : 'none'
      );
      const button = el('button', 'jp-ext-SweepView-sort', c.name);
      button.type = 'button';
      button.dataset.testid = 'jupyter-ext-sweep-sort';
      button.dataset.column = c.key;
      if (sorted) {
        button.dataset.sort = this.sortDir;
        button.append(el('span', 'jp-ext-SweepView-arrow', this.sortDir === 'asc' ? ' ▲' : ' ▼'));
      }
      button.title = `Sort by ${c.name}${sorted && this.sortDir === 'asc' ? ' (descending)' : ''}`;
      button.onclick = () => this.sortBy(c.key);
      th.append(button);
      headRow.append(th);
    }
    head.append(headRow);
    const body = el('tbody', '');
    for (const child of sortChildren(sweep.children, column, this.sortDir)) {
      const row = el('tr', 'jp-ext-SweepView-row');
      row.dataset.testid = 'jupyter-ext-sweep-row';
      row.dataset.job = child.id;
      row.dataset.status = child.status;
      row.tabIndex = 0;
      row.title = `Open ${child.name} (job ${child.id})`;
      const isBest = best?.id === child.id;
      if (isBest) {
        row.classList.add('jp-mod-best');
        row.dataset.best = 'true';
      }
      const mark = el('td', 'jp-ext-SweepView-mark', isBest ? '★' : '');
      if (isBest) {
        mark.title = `best ${metric}`;
      }
      row.append(mark);
      for (const c of columns) {
        const value = columnValue(child, c);
        const td = el('td', `jp-ext-SweepView-${c.kind}`);
        td.dataset.column = c.key;
        if (c.kind === 'status') {
          td.append(statusBadge(child.status));
        } else if (c.kind === 'duration') {
          td.textContent = typeof value === 'number' ? runSeconds(value) : '–';
        } else {
          td.textContent = cellText(value);
          if (typeof value === 'number') {
            td.dataset.value = String(value);
          }
        }
        if (isBest && c.kind === 'metric' && c.name === metric) {
          td.classList.add('jp-mod-best');
        }
        row.append(td);
      }
      row.onclick = () => this.openJob(child.id);
      row.onkeydown = event => {
        if (event.key === 'Enter') {
          this.openJob(child.id);
        }
      };
      body.append(row);
    }
    this.table.replaceChildren(head, body);
  }

  private renderPlot(
    sweep: ISweep,
    best: ISweepChild | null,
    metric: string | null,
    param: string | null
  ): void {
    this.legend.replaceChildren();
    if (!metric || !param) {
      this.plotHost.replaceChildren(
        el('div', 'jp-ext-SweepView-empty', 'The plot shows once a run logs a metric.')
      );
      return;
    }
    const points = plotPoints(sweep, metric, param, best);
    if (!points.length) {
      const waiting = sweep.children.some(c => !TERMINAL.has(c.status));
      this.plotHost.replaceChildren(
        el(
          'div',
          'jp-ext-SweepView-empty',
          waiting ? `No ${metric} values yet.` : `No run logged ${metric}.`
        )
      );
      return;
    }
    this.plotHost.replaceChildren(
      renderPlot(points, { xLabel: param, yLabel: metric, onPoint: id => this.openJob(id) })
    );
    const series = seriesOf(points);
    if (series.length > 1) {
      series.forEach((name, i) => {
        const item = el('li', '');
        item.append(el('span', `jp-ext-SweepView-swatch jp-ext-Plot-series${i % 8}`), name);
        this.legend.append(item);
      });
    }
  }
}
