/**
 * One bar on top of every code cell: a chip with the cell's step and resources (click: the
 * step editor), the state of the cell in the notebook's last job, and the error or warning
 * the backend reported for it.
 */

import type { Cell } from '@jupyterlab/cells';
import type { NotebookPanel } from '@jupyterlab/notebook';
import { Signal } from '@lumino/signaling';
import { PanelLayout, Widget } from '@lumino/widgets';
import { ICellMessage, IRunRecord, pyValue } from './cellsync';
import { analyzeNotebook, cellsLabel, chipText, INotebookSteps } from './tagmodel';
import { Status, STATUS_WORDS } from './tokens';

/** The bar of one code cell. */
export class CellBar extends Widget {
  readonly chip: HTMLButtonElement;
  private readonly state: HTMLSpanElement;
  private readonly message: HTMLDivElement;
  private readonly params: HTMLDivElement;

  constructor(onChip: (bar: CellBar) => void) {
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
    row.append(this.chip, this.state);
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

  /** Show what the tags say about cell `index`. */
  showTags(nb: INotebookSteps, index: number): void {
    const cell = nb.cells[index];
    const text = chipText(nb, index);
    this.chip.textContent = text;
    this.chip.dataset.role = cell?.opens
      ? 'step'
      : (cell?.role ?? (cell?.step ? 'continues' : 'none'));
    if (cell?.step && !nb.single) {
      this.chip.dataset.step = cell.step;
    } else {
      delete this.chip.dataset.step;
    }
    const step = cell?.opens && cell.step ? nb.steps.get(cell.step) : undefined;
    const lines: string[] = [];
    if (step) {
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
    this.chip.title = lines.join('\n');
    this.chip.classList.toggle('jp-mod-step', !!cell?.opens);
    this.chip.classList.toggle('jp-mod-problem', (cell?.problems.length ?? 0) > 0);
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

/**
 * Keeps a CellBar on every code cell of one notebook, in step with its tags (any cell's tags
 * can change another cell's chip) and with the last job's record.
 */
export class CellDecorator {
  private readonly bars = new Map<Cell, CellBar>();
  private readonly watched = new WeakSet<object>();
  private scheduled = false;
  private run: IRunRecord | null = null;
  private disposed = false;
  private analysis: INotebookSteps | null = null;

  constructor(
    private readonly panel: NotebookPanel,
    private readonly onChip: (index: number) => void
  ) {
    panel.content.model?.cells.changed.connect(this.schedule, this);
    panel.content.modelChanged.connect(() => {
      panel.content.model?.cells.changed.connect(this.schedule, this);
      this.schedule();
    }, this);
    this.schedule();
  }

  /** The notebook's steps as its tags say now. */
  get steps(): INotebookSteps {
    return this.analysis ?? this.analyze();
  }

  dispose(): void {
    this.disposed = true;
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

  private analyze(): INotebookSteps {
    const cells = this.panel.content.widgets.map(cell => ({
      type: cell.model.type,
      tags: cell.model.getMetadata('tags')
    }));
    this.analysis = analyzeNotebook(cells);
    return this.analysis;
  }

  /** Render every bar now. */
  render(): void {
    if (this.disposed || this.panel.isDisposed) {
      return;
    }
    const nb = this.analyze();
    const alive = new Set<Cell>();
    // papermill injects the job's parameters after the last parameters cell: shown there.
    const paramsCell = nb.cells.reduce((last, c) => (c.role === 'parameters' ? c.index : last), -1);
    this.panel.content.widgets.forEach((cell, index) => {
      if (cell.model.type !== 'code') {
        return;
      }
      alive.add(cell);
      if (!this.watched.has(cell.model)) {
        this.watched.add(cell.model);
        cell.model.metadataChanged.connect(this.schedule, this);
      }
      let bar = this.bars.get(cell);
      if (!bar) {
        bar = new CellBar(() => this.onChip(this.panel.content.widgets.indexOf(cell)));
        this.bars.set(cell, bar);
        const created = bar;
        void cell.ready.then(() => {
          if (!created.isDisposed && !cell.isDisposed) {
            (cell.layout as PanelLayout).insertWidget(1, created);
          }
        });
      }
      bar.showTags(nb, index);
      const id = cell.model.id;
      bar.showRun(this.run?.states[id], this.run?.messages[id]);
      bar.showParameters(index === paramsCell ? this.run : null);
    });
    for (const [cell, bar] of this.bars) {
      if (!alive.has(cell)) {
        bar.dispose();
        this.bars.delete(cell);
      }
    }
  }
}
