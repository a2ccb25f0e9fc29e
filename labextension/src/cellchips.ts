/**
 * One bar on top of every code cell: a chip with the cell's step and resources (click: the
 * step editor), the state of the cell in the notebook's last job, and the error or warning
 * the backend reported for it. What the tags say comes from the server (tagcheck.ts), asked
 * 300 ms after the last edit; the chips say so while an answer is on its way or missing.
 */

import type { Cell } from '@jupyterlab/cells';
import type { NotebookPanel } from '@jupyterlab/notebook';
import { Signal } from '@lumino/signaling';
import { PanelLayout, Widget } from '@lumino/widgets';
import { ICellMessage, IRunRecord, pyValue } from './cellsync';
import { shortId } from './jobstate';
import { cellsLabel, chipText } from './labels';
import {
  CheckState,
  checkFailedText,
  ICheckCell,
  INotebookSteps,
  ITagCheckRequest,
  stepNamed,
  TagChecker
} from './tagcheck';
import { Status, STATUS_WORDS } from './tokens';

/** The bar of one code cell. */
export class CellBar extends Widget {
  readonly chip: HTMLButtonElement;
  /** "cached from job X" on a cell of a step the cache satisfied; a click opens that job. */
  readonly cached: HTMLButtonElement;
  private readonly state: HTMLSpanElement;
  private readonly message: HTMLDivElement;
  private readonly params: HTMLDivElement;

  constructor(onChip: (bar: CellBar) => void, onCached: (job: string) => void = () => undefined) {
    super();
    this.addClass('jp-ext-CellBar');
    const row = document.createElement('div');
    row.className = 'jp-ext-CellBar-row';
    this.chip = document.createElement('button');
    this.chip.type = 'button';
    this.chip.className = 'jp-ext-CellChip';
    this.chip.dataset.testid = 'jupyter-ext-cell-chip';
    this.chip.onclick = event => {
      event.stopPropagation();
      onChip(this);
    };
    this.state = document.createElement('span');
    this.state.className = 'jp-ext-CellState';
    this.state.dataset.testid = 'jupyter-ext-cell-state';
    this.state.hidden = true;
    this.cached = document.createElement('button');
    this.cached.type = 'button';
    this.cached.className = 'jp-ext-CachedFrom';
    this.cached.dataset.testid = 'jupyter-ext-cell-cached';
    this.cached.hidden = true;
    this.cached.onclick = event => {
      event.stopPropagation();
      if (this.cached.dataset.job) {
        onCached(this.cached.dataset.job);
      }
    };
    row.append(this.chip, this.state, this.cached);
    this.message = document.createElement('div');
    this.message.className = 'jp-ext-CellError';
    this.message.dataset.testid = 'jupyter-ext-cell-error';
    this.message.setAttribute('role', 'alert');
    this.message.hidden = true;
    this.params = document.createElement('div');
    this.params.className = 'jp-ext-CellParameters';
    this.params.dataset.testid = 'jupyter-ext-cell-parameters';
    this.params.hidden = true;
    this.node.append(row, this.message, this.params);
  }

  /**
   * On the parameters cell: the values the job ran with where they differ from the ones
   * written in the cell, as papermill's injected-parameters cell shows them (null: none).
   */
  showParameters(run: Pick<IRunRecord, 'job' | 'parameters'> | null): void {
    const entries = Object.entries(run?.parameters ?? {});
    if (!run || !entries.length) {
      this.params.hidden = true;
      this.params.textContent = '';
      return;
    }
    const head = document.createElement('div');
    head.className = 'jp-ext-CellParameters-head';
    head.textContent = `Job ${run.job.slice(0, 6)} ran with these values instead of the ones below:`;
    const code = document.createElement('pre');
    code.className = 'jp-ext-CellParameters-code';
    code.textContent = entries.map(([name, value]) => `${name} = ${pyValue(value)}`).join('\n');
    this.params.replaceChildren(head, code);
    this.params.title = "The job's injected parameters (papermill's injected-parameters cell)";
    this.params.hidden = false;
  }

  /**
   * Show what the tags say about cell `index` (`nb` null: no answer yet), and whether that is
   * the server's answer to the tags as they are now (`state`).
   */
  showTags(
    nb: INotebookSteps | null,
    index: number,
    state: CheckState = 'ready',
    error = ''
  ): void {
    const cell = nb?.cells[index];
    this.chip.textContent = nb ? chipText(nb, index) : '…';
    this.chip.dataset.role = cell?.opens
      ? 'step'
      : (cell?.role ?? (cell?.step ? 'continues' : 'none'));
    this.chip.dataset.check = state;
    if (cell?.step && !nb?.single) {
      this.chip.dataset.step = cell.step;
    } else {
      delete this.chip.dataset.step;
    }
    const step = nb && cell?.opens ? stepNamed(nb, cell.step) : undefined;
    const lines: string[] = [];
    if (!nb) {
      lines.push(state === 'failed' ? checkFailedText(error) : 'Checking the tags…');
    } else if (step) {
      lines.push(`Step ${step.name} (${cellsLabel(step.cells)})`);
      if (step.after.length) {
        lines.push(`runs after ${step.after.join(', ')}`);
      }
      for (const [key, value] of Object.entries(step.settings)) {
        lines.push(`${key}: ${value}`);
      }
      lines.push('Click to edit the step.');
    } else if (cell?.role && cell.role !== 'step') {
      lines.push(`This is ${cell.role === 'skip' ? 'a skipped' : `the ${cell.role}`} cell.`);
    } else if (cell?.step && !nb.single) {
      lines.push(`Part of step ${cell.step}. Click to start a new step at this cell.`);
    } else {
      lines.push('Click to make this cell the start of a step.');
    }
    for (const problem of cell?.problems ?? []) {
      lines.push(`⚠ ${problem.message}`);
    }
    if (nb && state === 'waiting') {
      lines.push('(Checking the tags as they are now…)');
    } else if (nb && state === 'failed') {
      lines.push(checkFailedText(error));
    }
    this.chip.title = lines.join('\n');
    this.chip.classList.toggle('jp-mod-step', !!cell?.opens);
    this.chip.classList.toggle('jp-mod-problem', (cell?.problems.length ?? 0) > 0);
    this.chip.classList.toggle('jp-mod-checking', state === 'waiting');
    this.chip.classList.toggle('jp-mod-unchecked', state === 'failed');
  }

  /**
   * On a cell of a step the cache satisfied: the job whose run its outputs are (null: none).
   * `job`: the job the cells follow.
   */
  showCached(from: { job: string; step: string; attempt: number } | null, job = ''): void {
    if (!from) {
      this.cached.hidden = true;
      delete this.cached.dataset.job;
      return;
    }
    this.cached.hidden = false;
    this.cached.dataset.job = from.job;
    this.cached.textContent = `cached from job ${shortId(from.job)}`;
    this.cached.title =
      `Job ${shortId(job) || 'of these outputs'} did not run this cell again: its step's inputs ` +
      `did not change since job ${from.job} ran step ${from.step}, whose outputs these are. ` +
      'Click to open that job. To run it again, use Run on cluster with "Ignore cached results".';
  }

  /** Show the cell's state in the last job and the message the backend reported for it. */
  showRun(state: Status | undefined, message: ICellMessage | undefined): void {
    if (state) {
      this.state.hidden = false;
      this.state.dataset.state = state;
      this.state.textContent = STATUS_WORDS[state] ?? state;
    } else {
      this.state.hidden = true;
      delete this.state.dataset.state;
    }
    if (message) {
      this.message.hidden = false;
      this.message.dataset.kind = message.kind;
      this.message.textContent = message.text;
    } else {
      this.message.hidden = true;
      this.message.textContent = '';
    }
  }
}

/** Cell id -> the run its outputs are cached from, for the cells of the record's cached steps. */
export function cachedFrom(
  run: Pick<IRunRecord, 'cached' | 'steps' | 'ids'> | null
): Map<string, { job: string; step: string; attempt: number }> {
  const cells = new Map<string, { job: string; step: string; attempt: number }>();
  for (const [step, from] of Object.entries(run?.cached ?? {})) {
    for (const index of run?.steps[step] ?? []) {
      const id = run?.ids[index];
      if (id) {
        cells.set(id, from);
      }
    }
  }
  return cells;
}

/** The notebook metadata keys with step defaults (ours and Kale's), sent with a tag check. */
const DEFAULTS_KEYS = ['jupyter_ext', 'kubeflow_notebook'];

/** The cells of a notebook panel as a tag check sends them. */
export function checkCells(panel: NotebookPanel): ICheckCell[] {
  return panel.content.widgets.map(cell => {
    const tags = cell.model.getMetadata('tags');
    return { cell_type: cell.model.type, metadata: tags === undefined ? {} : { tags } };
  });
}

/**
 * Keeps a CellBar on every code cell of one notebook, in step with its tags (any cell's tags
 * can change another cell's chip: the server is asked about the whole notebook) and with the
 * last job's record.
 */
export class CellDecorator {
  private readonly bars = new Map<Cell, CellBar>();
  private readonly watched = new WeakSet<object>();
  private scheduled = false;
  private run: IRunRecord | null = null;
  private disposed = false;
  /** Open a job's view (a cached cell's chip names the job its outputs came from). */
  openJob: ((id: string) => void) | null = null;
  readonly checker: TagChecker<ITagCheckRequest, INotebookSteps>;

  constructor(
    private readonly panel: NotebookPanel,
    private readonly onChip: (index: number) => void,
    check: (request: ITagCheckRequest) => Promise<INotebookSteps>,
    delayMs = 300
  ) {
    this.checker = new TagChecker(check, delayMs);
    this.checker.changed.connect(this.schedule, this);
    panel.content.model?.cells.changed.connect(this.tagsChanged, this);
    panel.content.modelChanged.connect(() => {
      panel.content.model?.cells.changed.connect(this.tagsChanged, this);
      this.tagsChanged();
    }, this);
    this.tagsChanged();
  }

  /** The server's last answer about the notebook's tags (null: none yet). */
  get steps(): INotebookSteps | null {
    return this.checker.result;
  }

  /** Ask the server about the tags as they are now, at once, and answer with what it says. */
  analyze(): Promise<INotebookSteps> {
    return this.checker.now(this.request());
  }

  dispose(): void {
    this.disposed = true;
    this.checker.dispose();
    Signal.clearData(this);
    for (const bar of this.bars.values()) {
      bar.dispose();
    }
    this.bars.clear();
  }

  /** Show the states and messages of `record` (null: no job). */
  showRun(record: IRunRecord | null): void {
    this.run = record;
    this.schedule();
  }

  /** The cells or their tags changed: ask the server again (debounced), and re-render. */
  tagsChanged(): void {
    if (this.disposed) {
      return;
    }
    this.checker.request(this.request());
    this.schedule();
  }

  /** Re-render on the next frame (many changes in one frame render once). */
  schedule(): void {
    if (this.scheduled || this.disposed) {
      return;
    }
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.render();
    });
  }

  private request(): ITagCheckRequest {
    // The notebook-wide defaults the planner reads (DESIGN.md); the rest of the metadata (the
    // run record among it) is not sent.
    const model = this.panel.content.model;
    const metadata: { [key: string]: unknown } = {};
    for (const key of DEFAULTS_KEYS) {
      const value = model?.getMetadata(key);
      if (value !== undefined) {
        metadata[key] = JSON.parse(JSON.stringify(value));
      }
    }
    return { cells: checkCells(this.panel), metadata };
  }

  /** Render every bar now. */
  render(): void {
    if (this.disposed || this.panel.isDisposed) {
      return;
    }
    const nb = this.checker.result;
    const alive = new Set<Cell>();
    // papermill injects the job's parameters after the last parameters cell: shown there.
    const paramsCell = (nb?.cells ?? []).reduce(
      (last, c) => (c.role === 'parameters' ? c.index : last),
      -1
    );
    const cachedCells = cachedFrom(this.run);
    this.panel.content.widgets.forEach((cell, index) => {
      if (cell.model.type !== 'code') {
        return;
      }
      alive.add(cell);
      if (!this.watched.has(cell.model)) {
        this.watched.add(cell.model);
        cell.model.metadataChanged.connect(this.tagsChanged, this);
      }
      let bar = this.bars.get(cell);
      if (!bar) {
        bar = new CellBar(
          () => this.onChip(this.panel.content.widgets.indexOf(cell)),
          job => this.openJob?.(job)
        );
        this.bars.set(cell, bar);
        const created = bar;
        void cell.ready.then(() => {
          if (!created.isDisposed && !cell.isDisposed) {
            (cell.layout as PanelLayout).insertWidget(1, created);
          }
        });
      }
      bar.showTags(nb, index, this.checker.state, this.checker.error);
      const id = cell.model.id;
      bar.showRun(this.run?.states[id], this.run?.messages[id]);
      bar.showParameters(index === paramsCell ? this.run : null);
      bar.showCached(cachedCells.get(id) ?? null, this.run?.job);
    });
    for (const [cell, bar] of this.bars) {
      if (!alive.has(cell)) {
        bar.dispose();
        this.bars.delete(cell);
      }
    }
  }
}
