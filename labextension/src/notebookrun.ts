/**
 * The notebook side of jupyter-ext: a "Run on cluster" toolbar button, a step chip on every
 * code cell, and the job's outputs arriving live in the cells that produced them.
 *
 * One `NotebookRun` per open notebook ties the pieces together: the submit dialog, the cell
 * bars (cellchips.ts), the step editor, and the event-to-cell mapping (cellsync.ts), whose
 * record lives in the notebook's metadata so a reload resumes where the outputs stop.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  showDialog,
  showErrorMessage,
  ToolbarButton
} from '@jupyterlab/apputils';
import type { ICodeCellModel } from '@jupyterlab/cells';
import type { DocumentRegistry } from '@jupyterlab/docregistry';
import type * as nbformat from '@jupyterlab/nbformat';
import { INotebookModel, INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { runIcon } from '@jupyterlab/ui-components';
import type { IDisposable } from '@lumino/disposable';
import { CellDecorator } from './cellchips';
import {
  CellSync,
  ICellSink,
  IRunRecord,
  isRecord,
  newRecord,
  RUN_METADATA_KEY,
  runCells
} from './cellsync';
import { ApiError, JupyterExtClient } from './client';
import { cellLabel } from './labels';
import { RunRegistry } from './runregistry';
import { ITagStore, StepEditorBody } from './stepeditor';
import { ISubmitChoice, SubmitDialogBody } from './submitdialog';
import { checkFailedText, INotebookSteps, ITagCheckRequest } from './tagcheck';
import { IJupyterExtClient } from './tokens';
import type { IEvent, IEventStream, IJob } from './tokens';

export const RUN_COMMAND = 'jupyter-ext:run-notebook';

/** The cells of a notebook model, reached by id (ICellSink of cellsync.ts). */
export class NotebookSink implements ICellSink {
  constructor(private readonly model: () => INotebookModel | null) {}

  private find(id: string): ICodeCellModel | null {
    const cells = this.model()?.cells;
    if (!cells) {
      return null;
    }
    for (let i = 0; i < cells.length; i++) {
      const cell = cells.get(i);
      if (cell.id === id) {
        return cell.type === 'code' ? (cell as ICodeCellModel) : null;
      }
    }
    return null;
  }

  has(id: string): boolean {
    return this.find(id) !== null;
  }

  idAt(index: number): string | null {
    const cells = this.model()?.cells;
    return cells && index < cells.length ? cells.get(index).id : null;
  }

  clear(id: string): void {
    this.find(id)?.outputs.clear();
  }

  append(id: string, output: { [key: string]: any }): number {
    const cell = this.find(id);
    if (!cell) {
      return -1;
    }
    // The user's own code made these outputs, as a local kernel would have: trust them alike.
    cell.trusted = true;
    cell.outputs.add(output as nbformat.IOutput);
    return cell.outputs.length - 1;
  }

  replace(id: string, index: number, output: { [key: string]: any }): void {
    const cell = this.find(id);
    if (cell && index >= 0 && index < cell.outputs.length) {
      cell.outputs.set(index, output as nbformat.IOutput);
    }
  }

  setExecutionCount(id: string, count: number | null): void {
    const cell = this.find(id);
    if (cell) {
      cell.executionCount = count;
    }
  }
}

/** The open notebooks' NotebookRuns (a re-run from a job view or the panel finds its notebook here). */
const openRuns = new RunRegistry<NotebookRun>();

/** The NotebookRun of the open notebook at `path` (a job's `notebook`), if it is open. */
export function notebookRunFor(path: string): NotebookRun | null {
  return openRuns.find(path);
}

/**
 * The NotebookRun of the notebook at `path` once it is open (at once if it is): a re-run that
 * opened its notebook waits here for the notebook's run to exist. Null after `timeoutMs`.
 */
export function whenNotebookRun(path: string, timeoutMs: number): Promise<NotebookRun | null> {
  return openRuns.when(path, timeoutMs);
}

/** Everything jupyter-ext adds to one open notebook. */
export class NotebookRun implements IDisposable {
  readonly decorator: CellDecorator;
  private sync: CellSync | null = null;
  private stream: IEventStream | null = null;
  private disposed = false;
  /** Open a job's view (a sweep submitted from here, the job a cached cell came from). */
  openJob: ((id: string) => void) | null = null;
  /** Settles once the job recorded in the notebook (if any) is followed again. */
  private readonly resumed: Promise<void>;

  constructor(
    readonly panel: NotebookPanel,
    readonly context: DocumentRegistry.IContext<INotebookModel>,
    private readonly client: JupyterExtClient
  ) {
    this.decorator = new CellDecorator(
      panel,
      index => void this.editStep(index),
      request => client.checkTags(request)
    );
    context.saveState.connect((_, state) => {
      if (state === 'started') {
        this.writeRecord(); // the saved file holds the record that explains its outputs
      }
    });
    this.resumed = context.ready.then(() => this.resume()).catch(() => undefined);
    openRuns.add(this);
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** The record of the job whose outputs the cells show (null: none). */
  get record(): IRunRecord | null {
    return this.sync?.record ?? null;
  }

  dispose(): void {
    if (this.disposed) {
      return;
    }
    this.disposed = true;
    openRuns.delete(this);
    this.stream?.dispose();
    this.decorator.dispose();
  }

  /** The notebook's tags, read and written through its model. */
  get tags(): ITagStore {
    const model = () => this.panel.content.model!;
    return {
      cells: () =>
        Array.from({ length: model().cells.length }, (_, i) => {
          const cell = model().cells.get(i);
          const tags = cell.getMetadata('tags');
          return { cell_type: cell.type, metadata: tags === undefined ? {} : { tags } };
        }),
      write: (index: number, tags: string[]) => {
        const cell = model().cells.get(index);
        if (tags.length) {
          cell.setMetadata('tags', tags);
        } else {
          cell.deleteMetadata('tags');
        }
      }
    };
  }

  /** Open the step editor for cell `index`. */
  async editStep(index: number): Promise<void> {
    if (index < 0) {
      return;
    }
    let nb: INotebookSteps;
    try {
      nb = await this.decorator.analyze(); // the tags as they are now, read by the server
    } catch (err) {
      await showErrorMessage('The step editor cannot open', checkFailedText(errorText(err)));
      return;
    }
    await openStepEditor(this.tags, nb, index, request => this.client.checkTags(request));
    this.decorator.tagsChanged();
  }

  /** Save, show the submit dialog, submit, then follow the job into the cells. */
  async run(): Promise<void> {
    await this.context.ready;
    if (this.context.model.dirty || !this.context.contentsModel) {
      try {
        await this.context.save(); // the server plans and runs the file, not the browser's copy
      } catch (err) {
        await showErrorMessage(
          'Save the notebook to run it',
          `The job runs the saved file, and saving failed: ${(err as Error).message ?? err}`
        );
        return;
      }
    }
    const body = new SubmitDialogBody(this.client, this.context.localPath);
    let choice: ISubmitChoice | null = null;
    try {
      const result = await showDialog({
        title: 'Run on cluster',
        body,
        buttons: [Dialog.cancelButton({ label: 'Cancel' }), Dialog.okButton({ label: 'Run' })]
      });
      choice = result.button.accept ? result.value : null;
    } catch (err) {
      await showErrorMessage('The job was not submitted', (err as Error).message);
      return;
    }
    if (!choice) {
      return;
    }
    let job;
    try {
      job = await this.client.submit({
        notebook: this.context.localPath,
        backend: choice.backend,
        parameters: choice.parameters,
        ...(choice.fresh ? { fresh: true } : {}),
        ...(choice.sweep
          ? {
              sweep: choice.sweep,
              sweep_mode: choice.sweep_mode,
              sweep_parallel: choice.sweep_parallel
            }
          : {})
      });
    } catch (err) {
      const message = err instanceof ApiError ? err.message : String(err);
      await showErrorMessage('The job was not submitted', message);
      return;
    }
    if (job.sweep) {
      // One run per combination: no one run's outputs belong in the cells; its table does.
      this.openJob?.(job.id);
      return;
    }
    await this.start(job);
  }

  /**
   * Show `job` in the cells from its first event on: a run from the toolbar, or a re-run from a
   * job view or the panel. The cells it will run are cleared now, as Lab's Run all clears each
   * cell it runs (the others, and those of steps it reuses, keep what they show).
   */
  async start(job: IJob): Promise<void> {
    await this.context.ready;
    // A notebook just opened may be picking up the job its file records: that ends first, so
    // it cannot take the cells back from this one.
    await this.resumed;
    const model = this.panel.content.model;
    if (this.disposed || !model || this.record?.job === job.id || job.sweep) {
      return; // (a sweep has no cells of its own: its children run them)
    }
    const steps = Object.fromEntries(job.steps.map(s => [s.name, s.cells]));
    const reused = job.steps.filter(s => s.reused_from).map(s => s.name);
    let run: number[];
    try {
      run = runCells(await this.decorator.analyze(), reused);
    } catch {
      // The server's tag check did not answer: clear the cells of the steps that run.
      run = job.steps.filter(s => !reused.includes(s.name)).flatMap(s => s.cells);
    }
    if (this.disposed || this.record?.job === job.id) {
      return;
    }
    const ids = Array.from(model.cells, cell => cell.id);
    this.follow(newRecord(job.id, ids, steps, { parameters: job.parameters, reused }));
    this.sync!.begin(run);
    this.decorator.showRun(this.sync!.record);
    this.writeRecord();
    // Saved now, a reload (or reopening the notebook) finds the job and picks it up.
    try {
      await this.context.save();
    } catch {
      // Not saved (read-only, a conflict): the cells still follow the job on this page.
    }
  }

  /** After a reload or reopening: go on with the job recorded in the notebook's metadata. */
  private async resume(): Promise<void> {
    const saved = this.context.model.getMetadata(RUN_METADATA_KEY);
    if (!isRecord(saved)) {
      return;
    }
    const record = JSON.parse(JSON.stringify(saved)) as IRunRecord;
    if (!record.done) {
      try {
        await this.client.getJob(record.job);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) {
          record.done = true; // the job was deleted: keep what the cells show
        }
      }
    }
    if (!this.disposed) {
      this.follow(record);
    }
  }

  private follow(record: IRunRecord): void {
    this.stream?.dispose();
    this.stream = null;
    this.sync = new CellSync(record, new NotebookSink(() => this.panel.content.model));
    this.decorator.showRun(record);
    if (!record.done) {
      this.listen();
    }
  }

  private listen(): void {
    const sync = this.sync!;
    this.stream?.dispose();
    this.stream = this.client.streamEvents(sync.record.job, sync.record.seq, (event: IEvent) => {
      if (this.disposed || this.sync !== sync) {
        return;
      }
      const result = sync.apply(event);
      if (result === 'gap') {
        this.listen(); // reopen from the last applied seq: the server sends what is missing
      } else if (result === 'applied') {
        this.writeRecord();
        this.decorator.showRun(sync.record);
      }
    });
  }

  private writeRecord(): void {
    const record = this.sync?.record;
    const model = this.panel.content.model;
    if (record && model && !this.disposed) {
      model.setMetadata(RUN_METADATA_KEY, JSON.parse(JSON.stringify(record)));
    }
  }
}

/** An error's words. */
function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Open the step editor for cell `index`; on Save (or Remove step) write the tags the server
 * says to write (`check`: `POST tags/check`).
 */
export async function openStepEditor(
  store: ITagStore,
  nb: INotebookSteps,
  index: number,
  check: (request: ITagCheckRequest) => Promise<INotebookSteps>
): Promise<'saved' | 'removed' | 'cancelled'> {
  const opens = !!nb.cells[index]?.opens;
  const body = new StepEditorBody(nb, index, form =>
    check({ cells: store.cells(), edit: { cell: index, form } })
  );
  const buttons = [Dialog.cancelButton({ label: 'Cancel' })];
  if (opens) {
    buttons.push(Dialog.warnButton({ label: 'Remove step', accept: false }));
  }
  buttons.push(Dialog.okButton({ label: 'Save' }));
  const result = await showDialog({
    title: opens ? `Step ${nb.cells[index].step}` : `New step at ${cellLabel(index)}`,
    body,
    buttons,
    focusNodeSelector: 'input[name="name"]'
  });
  const removing = result.button.label === 'Remove step';
  if (!removing && (!result.button.accept || !result.value)) {
    return 'cancelled';
  }
  // The notebook may have changed while the dialog was open: ask about it as it is now.
  let answer: INotebookSteps;
  try {
    answer = await check({
      cells: store.cells(),
      edit: removing ? { cell: index, remove: true } : { cell: index, form: result.value! }
    });
  } catch (err) {
    await showErrorMessage(
      removing ? 'The step was not removed' : 'The step was not saved',
      checkFailedText(errorText(err))
    );
    return 'cancelled';
  }
  const errors = Object.values(answer.edit?.errors ?? {});
  if (errors.length) {
    await showDialog({
      title: 'The step was not saved',
      body: errors.join('\n'),
      buttons: [Dialog.okButton({ label: 'OK' })]
    });
    return 'cancelled';
  }
  for (const change of answer.edit?.changes ?? []) {
    store.write(change.cell, change.tags);
  }
  return removing ? 'removed' : 'saved';
}

/** Open notebooks -> their NotebookRun. */
const runs = new WeakMap<NotebookPanel, NotebookRun>();

/** Adds the toolbar button and the NotebookRun to each notebook as it opens. */
class RunExtension implements DocumentRegistry.IWidgetExtension<NotebookPanel, INotebookModel> {
  constructor(
    private readonly app: JupyterFrontEnd,
    private readonly client: JupyterExtClient
  ) {}

  createNew(panel: NotebookPanel, context: DocumentRegistry.IContext<INotebookModel>): IDisposable {
    const run = new NotebookRun(panel, context, this.client);
    // jobplugin.ts's `jupyter-ext:open-job` (named here: that module imports this one).
    const openJob = (id: string) => void this.app.commands.execute('jupyter-ext:open-job', { id });
    run.openJob = openJob;
    run.decorator.openJob = openJob;
    runs.set(panel, run);
    const button = new ToolbarButton({
      icon: runIcon,
      label: 'Run on cluster',
      tooltip: 'Run this notebook as a job (its steps on the cluster) and watch the outputs arrive',
      onClick: () => void this.app.commands.execute(RUN_COMMAND, { panel: panel.id })
    });
    button.node.dataset.testid = 'jupyter-ext-run';
    button.addClass('jp-ext-RunButton');
    panel.toolbar.insertItem(10, 'jupyterExtRun', button);
    panel.disposed.connect(() => {
      run.dispose();
      button.dispose();
    });
    return run;
  }
}

/** The notebook side: Run on cluster, step chips and editor, live outputs in the cells. */
export const notebookRunPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-ext:notebook',
  description:
    'Run a notebook as a job from its toolbar; edit steps per cell; outputs arrive live.',
  autoStart: true,
  requires: [INotebookTracker, IJupyterExtClient],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    client: JupyterExtClient,
    palette: ICommandPalette | null
  ) => {
    const target = (args: { panel?: unknown }): NotebookPanel | null => {
      return args.panel ? (tracker.find(p => p.id === args.panel) ?? null) : tracker.currentWidget;
    };
    app.commands.addCommand(RUN_COMMAND, {
      label: 'Run on cluster',
      caption: 'Run this notebook as a jupyter-ext job and follow its outputs in the cells',
      icon: runIcon,
      isEnabled: args => target(args) !== null,
      execute: async args => {
        const panel = target(args);
        const run = panel ? runs.get(panel) : undefined;
        if (run) {
          await run.run();
        }
      }
    });
    palette?.addItem({ command: RUN_COMMAND, category: 'Jobs' });
    app.docRegistry.addWidgetExtension('Notebook', new RunExtension(app, client));
  }
};
