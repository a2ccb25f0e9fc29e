/**
 * Sweeps and cached steps in the Lab (issue 15): the sweep table's sorting and best row, the
 * plot's scales and points, the Run dialog's sweep rows and "Ignore cached results" as the spec
 * they submit, a sweep job's view, cached steps in the cells, the job view and the panel.
 */

import { Widget } from '@lumino/widgets';
import { cachedFrom, CellBar } from '../cellchips';
import { CellSync, ICellSink, newRecord } from '../cellsync';
import { JupyterExtClient, MakeRequest } from '../client';
import { applyEvent, logLines, rerunSpec } from '../jobstate';
import { JobView } from '../jobview';
import { JobsPanel } from '../panel';
import { driveCells, INotebookOpener } from '../rerun';
import {
  bandScale,
  chooseScale,
  linearScale,
  logScale,
  niceTicks,
  renderPlot,
  shortNumber
} from '../plot';
import { parameterText, parseParameter, SubmitDialogBody, valueText } from '../submitdialog';
import { parseSweepValues, splitValues, sweepCount, SweepForm, sweepSpec } from '../sweepform';
import {
  bestChild,
  compareValues,
  defaultGoal,
  plotPoints,
  runSeconds,
  sortChildren,
  sweepColumns,
  sweepProgress,
  sweepValues,
  SweepView
} from '../sweepview';
import type { IEvent, IParameter, IPlan, ISweep, ISweepChild } from '../tokens';
import { FakeApi, job, settle, step, until } from './jobfakes';
import { reply, settings } from './transport';

beforeAll(() => {
  (URL as any).createObjectURL = () => 'blob:test';
  (URL as any).revokeObjectURL = () => undefined;
});

afterEach(() => {
  document.body.textContent = '';
});

function child(
  id: string,
  parameters: { [k: string]: any },
  metrics: { [k: string]: number } = {},
  over: Partial<ISweepChild> = {}
): ISweepChild {
  return {
    id,
    name: `train ${Object.entries(parameters)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`,
    parameters,
    status: 'succeeded',
    duration: 12,
    metrics,
    ...over
  };
}

/** A finished 3x2 grid over lr and depth, loss and acc logged (one child failed, no metrics). */
function sweep3x2(): ISweep {
  return {
    mode: 'grid',
    parallel: 4,
    parameters: ['lr', 'depth'],
    metrics: ['loss', 'acc'],
    counts: { succeeded: 5, failed: 1 },
    children: [
      child('c1', { lr: 0.1, depth: 3 }, { loss: 0.9, acc: 0.6 }, { duration: 30 }),
      child('c2', { lr: 0.1, depth: 5 }, { loss: 0.7, acc: 0.7 }, { duration: 4 }),
      child('c3', { lr: 0.01, depth: 3 }, { loss: 0.25, acc: 0.91 }),
      child('c4', { lr: 0.01, depth: 5 }, {}, { status: 'failed', duration: 2 }),
      child('c5', { lr: 0.001, depth: 3 }, { loss: 10, acc: 0.5 }),
      child('c6', { lr: 0.001, depth: 5 }, { loss: 0.3, acc: 0.95 })
    ]
  };
}

describe('the sweep table', () => {
  const columns = sweepColumns(sweep3x2());
  const col = (key: string) => columns.find(c => c.key === key)!;
  const ids = (children: ISweepChild[]) => children.map(c => c.id);

  it('has a column per swept parameter, per metric, then status and duration', () => {
    expect(columns.map(c => c.key)).toEqual([
      'param:lr',
      'param:depth',
      'metric:loss',
      'metric:acc',
      'status',
      'duration'
    ]);
  });

  it('sorts numbers as numbers, both ways, with missing values last either way', () => {
    const children = sweep3x2().children;
    // 10 > 0.9 as numbers (as text '10' < '0.9' would not be)
    expect(ids(sortChildren(children, col('metric:loss'), 'asc'))).toEqual([
      'c3',
      'c6',
      'c2',
      'c1',
      'c5',
      'c4'
    ]);
    expect(ids(sortChildren(children, col('metric:loss'), 'desc'))).toEqual([
      'c5',
      'c1',
      'c2',
      'c6',
      'c3',
      'c4'
    ]);
    // ties keep the sweep's order
    expect(ids(sortChildren(children, col('param:depth'), 'asc'))).toEqual([
      'c1',
      'c3',
      'c5',
      'c2',
      'c4',
      'c6'
    ]);
    expect(ids(sortChildren(children, col('duration'), 'asc'))).toEqual([
      'c4',
      'c2',
      'c3',
      'c5',
      'c6',
      'c1'
    ]);
    expect(ids(sortChildren(children, null))).toEqual(ids(children));
  });

  it('compares numbers before strings, strings with their numbers as numbers', () => {
    expect([10, 9, 'b', 'a10', 'a9', true].sort(compareValues)).toEqual([
      true,
      9,
      10,
      'a9',
      'a10',
      'b'
    ]);
  });

  it('finds the best child for a metric, lowest or highest, skipping those without it', () => {
    const children = sweep3x2().children;
    expect(bestChild(children, 'loss', 'min')?.id).toBe('c3');
    expect(bestChild(children, 'loss', 'max')?.id).toBe('c5');
    expect(bestChild(children, 'acc', 'max')?.id).toBe('c6');
    expect(bestChild(children, 'f1', 'max')).toBeNull();
    expect(bestChild(children, null, 'max')).toBeNull();
    expect(defaultGoal('val_loss')).toBe('min');
    expect(defaultGoal('accuracy')).toBe('max');
  });

  it('counts the runs done and gives back the swept values (grid: distinct; zip: in order)', () => {
    expect(sweepProgress(sweep3x2())).toEqual({ done: 6, total: 6, failed: 1 });
    expect(
      sweepProgress({ counts: { running: 2, queued: 3, succeeded: 1 }, children: [] })
    ).toEqual({ done: 1, total: 6, failed: 0 });
    expect(sweepValues(sweep3x2())).toEqual({ lr: [0.1, 0.01, 0.001], depth: [3, 5] });
    const zip: ISweep = {
      ...sweep3x2(),
      mode: 'zip',
      children: [child('a', { lr: 1, depth: 2 }), child('b', { lr: 1, depth: 3 })]
    };
    expect(sweepValues(zip)).toEqual({ lr: [1, 1], depth: [2, 3] });
  });
});

describe('the plot', () => {
  it('makes round ticks', () => {
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0.23, 9.7)).toEqual([2, 4, 6, 8]);
    expect(niceTicks(3, 3)).toEqual([3]);
    expect(shortNumber(0.001)).toBe('0.001');
    expect(shortNumber(0.00001)).toBe('1e-5');
    expect(shortNumber(1234567)).toBe('1.2e+6');
    expect(shortNumber(0.30000000000000004)).toBe('0.3');
  });

  it('maps values linearly, padded, and upside down for y', () => {
    const x = linearScale([0, 10], 0, 100);
    expect(x.at(0)! > 0 && x.at(0)! < 10).toBe(true);
    expect(x.at(10)! < 100 && x.at(10)! > 90).toBe(true);
    expect(x.at(5)).toBeCloseTo(50);
    const y = linearScale([0, 10], 200, 0);
    expect(y.at(10)! < y.at(0)!).toBe(true);
    expect(linearScale([2, 2], 0, 100).at(2)).toBeCloseTo(50);
    expect(x.at('a')).toBeNull();
  });

  it('puts spread positive numbers on a log scale, with powers of ten as ticks', () => {
    const s = chooseScale([0.1, 0.01, 0.001, 0.1], 0, 300);
    expect(s.kind).toBe('log');
    expect(s.at(0.01)).toBeCloseTo(150);
    expect(s.ticks().map(t => t.label)).toEqual(['0.001', '0.01', '0.1']);
    expect(logScale([1, 100], 0, 100).at(-1)).toBeNull();
    expect(chooseScale([3, 5], 0, 100).kind).toBe('linear');
    expect(chooseScale([0, 1, 1000], 0, 100).kind).toBe('linear');
  });

  it('gives strings (and mixed values) a band each, in order', () => {
    const s = chooseScale(['adam', 'sgd', 'adam', 3], 0, 300);
    expect(s.kind).toBe('band');
    expect(s.at('adam')).toBe(50);
    expect(s.at('sgd')).toBe(150);
    expect(s.at(3)).toBe(250);
    expect(s.at('rmsprop')).toBeNull();
    expect(
      bandScale([true, false], 0, 100)
        .ticks()
        .map(t => t.label)
    ).toEqual(['True', 'False']);
  });

  it('plots a point per child with the metric, a series per value of the other parameters', () => {
    const sweep = sweep3x2();
    const best = bestChild(sweep.children, 'loss', 'min');
    const points = plotPoints(sweep, 'loss', 'lr', best);
    expect(points.map(p => p.id)).toEqual(['c1', 'c2', 'c3', 'c5', 'c6']); // c4 logged nothing
    expect(points.map(p => p.series)).toEqual([
      'depth=3',
      'depth=5',
      'depth=3',
      'depth=3',
      'depth=5'
    ]);
    expect(points.find(p => p.best)?.id).toBe('c3');
    expect(points[0].title).toBe('lr=0.1, depth=3: loss = 0.9 (succeeded)');
    const opened: string[] = [];
    const svg = renderPlot(points, {
      xLabel: 'lr',
      yLabel: 'loss',
      onPoint: id => opened.push(id)
    });
    const dots = svg.querySelectorAll('[data-testid="jupyter-ext-sweep-point"]');
    expect(dots).toHaveLength(5);
    expect(svg.dataset.xScale).toBe('log');
    expect(svg.querySelectorAll('polyline')).toHaveLength(2); // depth=3 and depth=5
    expect(svg.querySelector('[data-best="true"]')?.getAttribute('data-job')).toBe('c3');
    (dots[1] as SVGElement).dispatchEvent(new MouseEvent('click'));
    expect(opened).toEqual(['c2']);
    // lower loss is drawn higher up the screen? no: y grows downwards, so lower loss = larger cy
    const cy = (id: string) => Number(svg.querySelector(`[data-job="${id}"]`)!.getAttribute('cy'));
    expect(cy('c3')).toBeGreaterThan(cy('c5'));
  });
});

const P = (over: Partial<IParameter>): IParameter => ({
  name: 'lr',
  value: 0.1,
  literal: true,
  default: '0.1',
  type: 'float',
  help: '',
  cell: 1,
  ...over
});
const PARAMS = [
  P({}),
  P({ name: 'depth', value: 3, default: '3', type: 'int' }),
  P({ name: 'opt', value: 'adam', default: "'adam'", type: 'str' }),
  P({ name: 'sizes', value: [1], default: '[1]', type: 'list' })
];

describe('the Run dialog’s sweep rows', () => {
  it('split values at commas outside brackets and quotes', () => {
    expect(splitValues('0.1, 0.01,0.001 ,')).toEqual(['0.1', '0.01', '0.001']);
    expect(splitValues('[1, 2], [3]')).toEqual(['[1, 2]', '[3]']);
    expect(splitValues(`'a, b', c`)).toEqual([`'a, b'`, 'c']);
    expect(splitValues('  ')).toEqual([]);
  });

  it('read each value as the parameter’s type', () => {
    expect(parseSweepValues(PARAMS[0], '0.1, 1e-2', parseParameter)).toEqual({
      values: [0.1, 0.01]
    });
    expect(parseSweepValues(PARAMS[1], '3, 5', parseParameter)).toEqual({ values: [3, 5] });
    expect(parseSweepValues(PARAMS[2], `adam, 'sgd, fast'`, parseParameter)).toEqual({
      values: ['adam', 'sgd, fast']
    });
    expect(parseSweepValues(PARAMS[3], '[1, 2], [3]', parseParameter)).toEqual({
      values: [[1, 2], [3]]
    });
    expect(parseSweepValues(PARAMS[1], '3, 5.5', parseParameter).error).toBe(
      "depth: '5.5' is not a whole number; use e.g. 3"
    );
    expect(parseSweepValues(PARAMS[1], ' ', parseParameter).error).toContain('give its values');
  });

  it('make the sweep spec, or say what is wrong (per row, or zip lengths, or parallelism)', () => {
    const rows = [
      { name: 'lr', text: '0.1, 0.01, 0.001' },
      { name: 'depth', text: '3, 5' }
    ];
    const grid = sweepSpec(rows, PARAMS, 'grid', '2', parseParameter);
    expect(grid.spec).toEqual({
      sweep: { lr: [0.1, 0.01, 0.001], depth: [3, 5] },
      sweep_mode: 'grid',
      sweep_parallel: 2
    });
    expect(sweepCount(grid.spec!.sweep!, 'grid')).toBe(6);
    expect(sweepSpec(rows, PARAMS, 'grid', '', parseParameter).spec!.sweep_parallel).toBeNull();
    const zip = sweepSpec(rows, PARAMS, 'zip', '', parseParameter);
    expect(zip.spec).toBeNull();
    expect(zip.error).toContain('each needs as many values (lr: 3, depth: 2)');
    expect(zip.field).toBe('sweep');
    expect(sweepSpec(rows, PARAMS, 'grid', '0', parseParameter).field).toBe('parallel');
    expect(sweepSpec(rows, PARAMS, 'grid', '0', parseParameter).error).toContain(
      'not a whole number of 1 or more'
    );
    const twice = sweepSpec([rows[0], rows[0]], PARAMS, 'grid', '', parseParameter);
    expect(twice.rowErrors).toEqual([null, 'lr is swept twice: put all its values in one row']);
    const unknown = sweepSpec([{ name: 'nope', text: '1' }], PARAMS, 'grid', '', parseParameter);
    expect(unknown.rowErrors[0]).toContain("choose one of the notebook's parameters");
    expect(sweepSpec([], PARAMS, 'grid', '', parseParameter).spec).toBeNull();
  });

  it('as a form: rows added and removed, errors shown (Run kept off), the spec read back', () => {
    const form = new SweepForm(parseParameter, valueText);
    form.setParameters(PARAMS);
    document.body.append(form.node);
    const add = form.node.querySelector<HTMLButtonElement>(
      '[data-testid="jupyter-ext-sweep-add"]'
    )!;
    add.click();
    add.click();
    const entries = () =>
      Array.from(
        form.node.querySelectorAll<HTMLElement>('[data-testid="jupyter-ext-sweep-entry"]')
      );
    expect(entries()).toHaveLength(2);
    // each new row takes a parameter not swept yet
    const names = () => entries().map(e => e.querySelector<HTMLSelectElement>('select')!.value);
    expect(names()).toEqual(['lr', 'depth']);
    const type = (i: number, text: string) => {
      const input = entries()[i].querySelector<HTMLInputElement>('input')!;
      input.value = text;
      input.dispatchEvent(new Event('input', { bubbles: true }));
    };
    type(0, '0.1, 0.01, 0.001');
    type(1, '3, x');
    expect(form.node.querySelector('.jp-mod-error')).not.toBeNull(); // the dialog disables Run
    expect(entries()[1].textContent).toContain("depth: 'x' is not a whole number");
    expect(() => form.value()).toThrow("depth: 'x' is not a whole number");
    type(1, '3, 5');
    expect(form.node.querySelector('.jp-mod-error')).toBeNull();
    expect(form.node.querySelector('[data-testid="jupyter-ext-sweep-count"]')!.textContent).toBe(
      '6 runs (lr: 3 × depth: 2)'
    );
    expect(form.value()).toEqual({
      sweep: { lr: [0.1, 0.01, 0.001], depth: [3, 5] },
      sweep_mode: 'grid',
      sweep_parallel: null
    });
    expect(form.swept).toEqual(new Set(['lr', 'depth']));
    entries()[1]
      .querySelector<HTMLButtonElement>('[data-testid="jupyter-ext-sweep-remove"]')!
      .click();
    expect(form.value()!.sweep).toEqual({ lr: [0.1, 0.01, 0.001] });
    entries()[0]
      .querySelector<HTMLButtonElement>('[data-testid="jupyter-ext-sweep-remove"]')!
      .click();
    expect(form.value()).toBeNull();
  });

  it('start from a sweep’s values (a re-run), in the parameters’ own notation', () => {
    const form = new SweepForm(parseParameter, valueText, {
      sweep: { lr: [1, 0.5], opt: ['adam', 'sgd'] },
      sweep_mode: 'zip',
      sweep_parallel: 2
    });
    form.setParameters(PARAMS);
    const values = Array.from(
      form.node.querySelectorAll<HTMLInputElement>('[data-testid="jupyter-ext-sweep-values"]')
    ).map(i => i.value);
    expect(values).toEqual(['1.0, 0.5', 'adam, sgd']);
    expect(form.value()).toEqual({
      sweep: { lr: [1, 0.5], opt: ['adam', 'sgd'] },
      sweep_mode: 'zip',
      sweep_parallel: 2
    });
  });
});

/** info + plan answered like the server. */
function planServer(plan: IPlan): JupyterExtClient {
  const makeRequest: MakeRequest = async url =>
    url.endsWith('/info')
      ? reply(200, { version: '0', backends: ['local'], default_backend: 'local', user: 'ada' })
      : reply(200, plan);
  return new JupyterExtClient(settings, makeRequest);
}

function demoPlan(): IPlan {
  return {
    notebook: 'sweep.ipynb',
    backend: 'local',
    steps: [
      {
        name: 'prep',
        after: [],
        cells: [{ index: 2, id: 'c2' }],
        resources: { gpu: 0, memory: null, cpu: null, image: null, extra_limits: {} },
        timeout: null,
        retries: 0,
        cache: true
      }
    ],
    parameters: PARAMS.slice(0, 2),
    warnings: [],
    single: false,
    error: null
  };
}

describe('SubmitDialogBody with a sweep', () => {
  it('answers the sweep and "Ignore cached results"; a swept parameter’s own value is not sent', async () => {
    const body = new SubmitDialogBody(planServer(demoPlan()), 'sweep.ipynb');
    Widget.attach(body, document.body);
    await body.ready;
    const node = body.node;
    const input = (testid: string, extra = '') =>
      node.querySelector<HTMLInputElement>(`[data-testid="${testid}"]${extra}`)!;
    // The lr parameter changed, then swept: the sweep's values win.
    input('jupyter-ext-param', '[data-param="lr"]').value = '0.5';
    input('jupyter-ext-param', '[data-param="depth"]').value = '4';
    node.querySelector<HTMLButtonElement>('[data-testid="jupyter-ext-sweep-add"]')!.click();
    const values = input('jupyter-ext-sweep-values');
    values.value = '0.1, 0.01';
    values.dispatchEvent(new Event('input', { bubbles: true }));
    expect(input('jupyter-ext-param', '[data-param="lr"]').disabled).toBe(true);
    expect(input('jupyter-ext-submit-fresh').checked).toBe(false);
    expect(node.querySelector('.jp-ext-SubmitDialog-fresh')!.getAttribute('title')).toContain(
      '1 step of this notebook reuse'
    );
    input('jupyter-ext-submit-fresh').click();
    const zip = node.querySelector<HTMLInputElement>(
      '[data-testid="jupyter-ext-sweep-mode"][value="zip"]'
    )!;
    zip.click();
    expect(body.getValue()).toMatchObject({
      backend: 'local',
      parameters: { depth: 4 },
      fresh: true,
      sweep: { lr: [0.1, 0.01] },
      sweep_mode: 'zip',
      sweep_parallel: null
    });
    expect(parameterText(PARAMS[0])).toBe('0.1');
  });

  it('without a sweep answers sweep null, and keeps the rows over a re-plan', async () => {
    const body = new SubmitDialogBody(planServer(demoPlan()), 'sweep.ipynb', { fresh: true });
    Widget.attach(body, document.body);
    await body.ready;
    expect(body.getValue()).toMatchObject({ parameters: {}, fresh: true, sweep: null });
    body.node.querySelector<HTMLButtonElement>('[data-testid="jupyter-ext-sweep-add"]')!.click();
    (body as any).render(); // as after a backend change
    expect(body.node.querySelectorAll('[data-testid="jupyter-ext-sweep-entry"]')).toHaveLength(1);
    expect(() => body.getValue()).toThrow('lr: give its values');
  });
});

describe('SweepView', () => {
  it('shows the table, sorts on header clicks, marks the best, plots, and opens children', () => {
    const opened: string[] = [];
    const view = new SweepView(id => opened.push(id));
    Widget.attach(view, document.body);
    view.showSweep(sweep3x2());
    const node = view.node;
    const rows = () =>
      Array.from(node.querySelectorAll<HTMLElement>('[data-testid="jupyter-ext-sweep-row"]'));
    expect(rows().map(r => r.dataset.job)).toEqual(['c1', 'c2', 'c3', 'c4', 'c5', 'c6']);
    expect(node.querySelector('[data-testid="jupyter-ext-sweep-summary"]')!.textContent).toBe(
      '6 runs · grid over lr, depth · 4 at a time · 6/6 done · 1 failed'
    );
    // loss: lower is better by default
    expect(rows().find(r => r.dataset.best)?.dataset.job).toBe('c3');
    expect(node.querySelector('[data-testid="jupyter-ext-sweep-best"]')!.textContent).toContain(
      'Best loss (lowest): 0.25 with lr=0.01, depth=3'
    );
    const sort = (key: string) =>
      node.querySelector<HTMLButtonElement>(
        `[data-testid="jupyter-ext-sweep-sort"][data-column="${key}"]`
      )!;
    sort('metric:loss').click();
    expect(rows().map(r => r.dataset.job)).toEqual(['c3', 'c6', 'c2', 'c1', 'c5', 'c4']);
    expect(sort('metric:loss').dataset.sort).toBe('asc');
    expect(sort('metric:loss').parentElement!.getAttribute('aria-sort')).toBe('ascending');
    sort('metric:loss').click();
    expect(rows().map(r => r.dataset.job)).toEqual(['c5', 'c1', 'c2', 'c6', 'c3', 'c4']);
    expect(sort('metric:loss').dataset.sort).toBe('desc');
    const cells = rows()[0].querySelectorAll('td');
    expect(Array.from(cells).map(c => c.textContent)).toEqual([
      '',
      '0.001',
      '3',
      '10',
      '0.5',
      'succeeded',
      '12s'
    ]);
    expect([runSeconds(0.919), runSeconds(0), runSeconds(9.96), runSeconds(75)]).toEqual([
      '0.9s',
      '0.0s',
      '10s',
      '1m15s'
    ]);
    // the goal toggles to highest; another metric
    node.querySelector<HTMLButtonElement>('[data-testid="jupyter-ext-sweep-goal"]')!.click();
    expect(rows().find(r => r.dataset.best)?.dataset.job).toBe('c5');
    const metric = node.querySelector<HTMLSelectElement>(
      '[data-testid="jupyter-ext-sweep-metric"]'
    )!;
    metric.value = 'acc';
    metric.dispatchEvent(new Event('change'));
    expect(rows().find(r => r.dataset.best)?.dataset.job).toBe('c6'); // acc: highest
    expect(node.querySelectorAll('[data-testid="jupyter-ext-sweep-point"]')).toHaveLength(5);
    const x = node.querySelector<HTMLSelectElement>('[data-testid="jupyter-ext-sweep-x"]')!;
    x.value = 'depth';
    x.dispatchEvent(new Event('change'));
    expect(node.querySelector('svg')!.dataset.xScale).toBe('linear');
    expect(node.querySelector('.jp-ext-SweepView-legend')!.textContent).toBe(
      'lr=0.1lr=0.01lr=0.001'
    );
    rows()[1].click();
    node.querySelector<HTMLButtonElement>('[data-testid="jupyter-ext-sweep-open-best"]')!.click();
    expect(opened).toEqual([rows()[1].dataset.job, 'c6']);
  });

  it('says so while no metric is logged', () => {
    const view = new SweepView(() => undefined);
    view.showSweep({
      ...sweep3x2(),
      metrics: [],
      counts: { running: 2 },
      children: [
        child('a', { lr: 1, depth: 1 }, {}, { status: 'running', duration: null }),
        child('b', { lr: 2, depth: 1 }, {}, { status: 'running', duration: null })
      ]
    });
    expect(
      view.node.querySelector('[data-testid="jupyter-ext-sweep-best"]')!.textContent
    ).toContain('No metrics yet');
    expect(
      view.node.querySelector('[data-testid="jupyter-ext-sweep-plot"]')!.textContent
    ).toContain('once a run logs a metric');
    expect(view.node.querySelectorAll('[data-testid="jupyter-ext-sweep-row"]')).toHaveLength(2);
  });
});

describe('a sweep job’s view', () => {
  function sweepJob(over: Partial<ReturnType<typeof job>> = {}) {
    return job({
      id: 's1',
      name: 'train',
      status: 'running',
      steps: [],
      sweep: sweep3x2(),
      ...over
    });
  }

  it('shows the sweep instead of steps, fetches it again on sweep.child and while it runs', async () => {
    const fake = new FakeApi();
    const running = sweepJob({
      sweep: { ...sweep3x2(), counts: { running: 1, succeeded: 5 } }
    });
    fake.add(running, [{ type: 'job.start' }]);
    const opened: string[] = [];
    const view = new JobView({
      client: fake.client,
      jobId: 's1',
      refetchMs: 5,
      sweepPollMs: 20,
      openJob: id => opened.push(id)
    });
    Widget.attach(view, document.body);
    await view.ready;
    await settle(60);
    const node = view.node;
    expect(node.dataset.kind).toBe('sweep');
    expect(view.sweepView.isHidden).toBe(false);
    expect(view.graph.isHidden).toBe(true);
    expect(view.artifacts.isHidden).toBe(true);
    expect(node.querySelector('[data-testid="jupyter-ext-job-parameters"]')!.textContent).toBe(
      'Swept: lr = 0.1, 0.01, 0.001; depth = 3, 5'
    );
    expect(node.querySelectorAll('[data-testid="jupyter-ext-sweep-row"]')).toHaveLength(6);
    // polled while running
    const before = fake.fetches.filter(f => f === 'getJob s1').length;
    await until(() => fake.fetches.filter(f => f === 'getJob s1').length > before + 1, 2000);
    expect(fake.fetches.filter(f => f === 'getJob s1').length).toBeGreaterThan(before + 1);
    // a child ends: fetched again at once; the row opens the child
    fake.jobs.set('s1', sweepJob({ status: 'succeeded' }));
    fake.emit('s1', { type: 'sweep.child', job: 'c6', status: 'succeeded' });
    fake.emit('s1', { type: 'job.end', status: 'succeeded' });
    await until(() => node.dataset.status === 'succeeded');
    expect(node.dataset.status).toBe('succeeded');
    node
      .querySelector<HTMLElement>('[data-testid="jupyter-ext-sweep-row"][data-job="c3"]')!
      .click();
    expect(opened).toEqual(['c3']);
    expect(view.freshButton.hidden).toBe(false);
    view.dispose();
  });

  it('re-runs a sweep as a sweep of the same values; Run fresh adds fresh', async () => {
    const fake = new FakeApi();
    fake.add(sweepJob({ status: 'succeeded', parameters: { opt: 'adam' } }));
    const view = new JobView({ client: fake.client, jobId: 's1', refetchMs: 5 });
    Widget.attach(view, document.body);
    await view.ready;
    await settle(60);
    view.freshButton.click();
    await until(() => fake.submitted.length === 1);
    expect(fake.submitted[0]).toEqual({
      notebook: 'examples/train.ipynb',
      name: 'train',
      backend: 'local',
      parameters: { opt: 'adam' },
      fresh: true,
      sweep: { lr: [0.1, 0.01, 0.001], depth: [3, 5] },
      sweep_mode: 'grid',
      sweep_parallel: 4
    });
    view.dispose();
  });

  it('on a child: links to its sweep', async () => {
    const fake = new FakeApi();
    fake.add(
      job({ id: 'c3', parent: 's1', status: 'succeeded', steps: [step({ name: 'train' })] })
    );
    const opened: string[] = [];
    const view = new JobView({
      client: fake.client,
      jobId: 'c3',
      refetchMs: 5,
      openJob: id => opened.push(id)
    });
    Widget.attach(view, document.body);
    await view.ready;
    await settle(60);
    const link = view.node.querySelector<HTMLButtonElement>(
      '[data-testid="jupyter-ext-job-parent"]'
    )!;
    expect(link.hidden).toBe(false);
    link.click();
    expect(opened).toEqual(['s1']);
    expect(view.freshButton.hidden).toBe(true); // no cached steps
    view.dispose();
  });
});

describe('cached steps', () => {
  const from = { job: 'old123456', step: 'prep', attempt: 1 };

  it('job view: the step says where its result came from (a click opens that job); Run fresh', async () => {
    const fake = new FakeApi();
    fake.add(
      job({
        id: 'j2',
        status: 'running',
        steps: [
          step({
            name: 'prep',
            status: 'queued',
            cells: [1],
            cache: { key: 'k', hit: false, from: null }
          }),
          step({ name: 'train', status: 'queued', cells: [2], after: ['prep'] })
        ]
      }),
      [
        { type: 'job.start' },
        { type: 'step.cached', step: 'prep', from, key: 'k' },
        { type: 'cell.start', step: 'prep', cell_index: 1, cell_id: 'b' },
        {
          type: 'cell.output',
          step: 'prep',
          cell_index: 1,
          output: { output_type: 'stream', name: 'stdout', text: 'prepared\n' }
        },
        { type: 'cell.end', step: 'prep', cell_index: 1, status: 'ok' },
        { type: 'step.end', step: 'prep', status: 'succeeded', cached_from: from }
      ]
    );
    const opened: string[] = [];
    const view = new JobView({
      client: fake.client,
      jobId: 'j2',
      refetchMs: 10_000, // the events alone move the picture
      openJob: id => opened.push(id)
    });
    Widget.attach(view, document.body);
    await view.ready;
    await settle(80);
    const section = view.node.querySelector<HTMLElement>(
      '[data-testid="jupyter-ext-step"][data-step="prep"]'
    )!;
    const cached = section.querySelector<HTMLButtonElement>(
      '[data-testid="jupyter-ext-step-cached"]'
    )!;
    expect(cached.hidden).toBe(false);
    expect(cached.textContent).toBe('cached from job old123456');
    expect(section.dataset.status).toBe('succeeded');
    expect(view.logOf('prep').toString()).toContain('── cached: the result of job old123456');
    expect(view.logOf('prep').toString()).toContain('prepared');
    cached.click();
    expect(opened).toEqual(['old123456']);
    const other = view.node.querySelector<HTMLElement>(
      '[data-testid="jupyter-ext-step"][data-step="train"]'
    )!;
    expect(
      other.querySelector<HTMLElement>('[data-testid="jupyter-ext-step-cached"]')!.hidden
    ).toBe(true);
    // Finished: Run fresh submits the same notebook with fresh
    fake.emit('j2', { type: 'job.end', status: 'succeeded' });
    await until(() => !view.freshButton.hidden);
    expect(view.freshButton.hidden).toBe(false);
    view.freshButton.click();
    await until(() => fake.submitted.length === 1);
    expect(fake.submitted[0]).toMatchObject({ notebook: 'examples/train.ipynb', fresh: true });
    expect(fake.submitted[0].sweep).toBeUndefined();
    view.dispose();
  });

  it('jobstate: step.cached marks the step as a cache hit', () => {
    const j = job({ steps: [step({ name: 'prep', cells: [1] })], status: 'queued' });
    const e = {
      v: 1,
      job: 'j1',
      seq: 3,
      ts: 1_790_000_000,
      type: 'step.cached',
      step: 'prep',
      from,
      key: 'k'
    } as IEvent;
    const after = applyEvent(j, e);
    expect(after.status).toBe('running');
    expect(after.steps[0].cache).toEqual({ key: 'k', hit: true, from });
    expect(logLines(e)[0].text).toContain('job old123456 (step prep, attempt 1)');
    expect(rerunSpec(j, { parameters: {}, backend: 'local', fresh: true }, null)).toEqual({
      notebook: 'examples/train.ipynb',
      parameters: {},
      backend: 'local',
      name: 'train',
      fresh: true
    });
  });

  it('cells: the replayed events fill the cached step’s cells; their bars say where from', () => {
    const cells: { [id: string]: any[] } = { a: [], b: ['old output'], c: ['old'] };
    const counts: { [id: string]: number | null } = {};
    const sink: ICellSink = {
      has: id => id in cells,
      idAt: i => ['a', 'b', 'c'][i] ?? null,
      clear: id => (cells[id] = []),
      append: (id, o) => cells[id].push(o.text) - 1,
      replace: () => undefined,
      setExecutionCount: (id, n) => (counts[id] = n)
    };
    const record = newRecord('j2', ['a', 'b', 'c'], { prep: [1], train: [2] });
    const sync = new CellSync(record, sink);
    sync.begin([0, 1, 2]);
    expect(cells.b).toEqual([]);
    const events: Partial<IEvent>[] = [
      { type: 'job.start' },
      { type: 'step.cached', step: 'prep', from, key: 'k' },
      { type: 'cell.start', step: 'prep', cell_index: 1, cell_id: 'b' },
      {
        type: 'cell.output',
        step: 'prep',
        cell_index: 1,
        cell_id: 'b',
        output: { output_type: 'stream', name: 'stdout', text: 'prepared\n' }
      },
      { type: 'cell.end', step: 'prep', cell_index: 1, cell_id: 'b', status: 'ok' },
      { type: 'step.end', step: 'prep', status: 'succeeded', cached_from: from },
      { type: 'step.start', step: 'train' },
      { type: 'cell.start', step: 'train', cell_index: 2, cell_id: 'c' },
      {
        type: 'cell.output',
        step: 'train',
        cell_index: 2,
        cell_id: 'c',
        output: { output_type: 'stream', name: 'stdout', text: 'trained\n' }
      },
      { type: 'cell.end', step: 'train', cell_index: 2, cell_id: 'c', status: 'ok' },
      { type: 'step.end', step: 'train', status: 'succeeded' }
    ];
    events.forEach((e, i) =>
      expect(sync.apply({ v: 1, job: 'j2', ts: 1, step: null, ...e, seq: i + 1 } as IEvent)).toBe(
        'applied'
      )
    );
    expect(cells.b).toEqual(['prepared\n']);
    expect(cells.c).toEqual(['trained\n']);
    expect(record.states).toEqual({ a: 'queued', b: 'succeeded', c: 'succeeded' });
    expect(record.cached).toEqual({ prep: from });
    expect(counts).toEqual({ a: null, b: 1, c: 2 });
    const chips = cachedFrom(record);
    expect([...chips.keys()]).toEqual(['b']);
    // The chip on the cell's bar
    const opened: string[] = [];
    const bar = new CellBar(
      () => undefined,
      id => opened.push(id)
    );
    bar.showCached(chips.get('b')!, 'j2');
    const chip = bar.node.querySelector<HTMLButtonElement>(
      '[data-testid="jupyter-ext-cell-cached"]'
    )!;
    expect(chip.hidden).toBe(false);
    expect(chip.textContent).toBe('cached from job old123');
    chip.click();
    expect(opened).toEqual(['old123456']);
    bar.showCached(null);
    expect(chip.hidden).toBe(true);
  });
});

describe('a sweep re-run', () => {
  it('drives no notebook cells (its runs are its children)', async () => {
    const calls: string[] = [];
    const opener: INotebookOpener = {
      find: () => ({ start: async j => void calls.push(`start ${j.id}`) }),
      exists: async () => true,
      open: async path => void calls.push(`open ${path}`),
      whenRun: async () => null
    };
    const sweep = job({ id: 's2', notebook: 'sweep.ipynb', steps: [], sweep: sweep3x2() });
    expect(await driveCells(sweep, opener)).toBeNull();
    expect(calls).toEqual([]);
    expect(await driveCells(job({ id: 'j9', notebook: 'a.ipynb' }), opener)).toBeNull();
    expect(calls).toEqual(['start j9']);
  });
});

describe('the Jobs panel', () => {
  it('shows a sweep as one row with n/m done (its children not as rows), cached steps as cached', async () => {
    const sweep = { ...sweep3x2(), counts: { succeeded: 2, failed: 1, running: 2, queued: 1 } };
    const client = {
      listJobs: async () => [
        job({ id: 's1', steps: [], sweep }),
        job({ id: 'c1', parent: 's1', steps: [step({ name: 'train' })] }),
        job({
          id: 'j3',
          status: 'succeeded',
          steps: [
            step({
              name: 'prep',
              status: 'succeeded',
              cache: { key: 'k', hit: true, from: { job: 'old1', step: 'prep', attempt: 1 } }
            }),
            step({ name: 'train', status: 'succeeded' })
          ]
        })
      ]
    } as unknown as JupyterExtClient;
    const panel = new JobsPanel(client);
    await panel.refresh();
    const rows = Array.from(
      panel.node.querySelectorAll<HTMLElement>('[data-testid="jupyter-ext-job-row"]')
    );
    expect(rows.map(r => r.dataset.job)).toEqual(['s1', 'j3']);
    expect(rows[0].querySelector('[data-testid="jupyter-ext-sweep-done"]')!.textContent).toBe(
      'sweep · 3/6 done · 1 failed'
    );
    const cached = rows[1].querySelector<HTMLElement>('[data-testid="jupyter-ext-step-cached"]')!;
    expect(cached.textContent).toBe('cached');
    expect(cached.title).toContain('cached from job old1');
    panel.dispose();
  });
});
