/**
 * "Schedule notebook…": a notebook toolbar button and palette command that make a schedule of
 * the open notebook, in a dialog (scheduleform.ts) that stays open until the server has made
 * the schedule or the user cancels: a refusal is shown next to the field it names. Also the
 * question before a schedule is deleted.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  showDialog,
  showErrorMessage,
  ToolbarButton
} from '@jupyterlab/apputils';
import type { DocumentRegistry } from '@jupyterlab/docregistry';
import { INotebookModel, INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { historyIcon } from '@jupyterlab/ui-components';
import type { IDisposable } from '@lumino/disposable';
import { JupyterExtClient } from './client';
import { recheckDialog } from './dom';
import { ScheduleDialogBody, submitSchedule } from './scheduleform';
import { whenText } from './schedules';
import { IJupyterExtClient, ISchedule, IScheduleSpec } from './tokens';

export const SCHEDULE_COMMAND = 'jupyter-ext:schedule-notebook';
/** Opens the Jobs panel's Schedules (args `{id}`: the schedule to bring into sight). */
export const SHOW_SCHEDULES_COMMAND = 'jupyter-ext:show-schedules';

/** Ask before deleting a schedule (the Schedules section's Delete); true: delete. */
export async function confirmDelete(schedule: ISchedule): Promise<boolean> {
  const result = await showDialog({
    title: `Delete schedule ${schedule.name}?`,
    body: `It will not run again (${whenText(schedule)}, ${schedule.notebook}). The jobs it made stay in the Jobs list.`,
    buttons: [Dialog.cancelButton({ label: 'Cancel' }), Dialog.warnButton({ label: 'Delete' })]
  });
  return result.button.accept;
}

/**
 * A Dialog whose accept button first runs `submit` and closes only when it answers true: a
 * refusal leaves the dialog open with the values typed, to fix and try again.
 */
export class SubmittingDialog<T> extends Dialog<T> {
  private submitting = false;

  constructor(
    options: Partial<Dialog.IOptions<T>>,
    private readonly acceptAt: number,
    private readonly submit: () => Promise<boolean>
  ) {
    super(options);
  }

  resolve(index?: number): void {
    const at = index ?? this.acceptAt;
    if (at !== this.acceptAt) {
      super.resolve(index);
      return;
    }
    // As the Dialog itself: no accepting while a field is marked wrong.
    if (this.submitting || this.node.querySelector(':invalid, .jp-mod-error')) {
      return;
    }
    this.submitting = true;
    const accept = this.node.querySelector<HTMLButtonElement>('.jp-Dialog-footer .jp-mod-accept');
    if (accept) {
      accept.disabled = true;
    }
    void this.submit()
      .catch(() => false)
      .then(ok => {
        this.submitting = false;
        if (this.isDisposed) {
          return;
        }
        if (accept) {
          accept.disabled = false;
        }
        if (ok) {
          super.resolve(at);
        } else {
          recheckDialog(this.node);
        }
      });
  }
}

/**
 * Ask for a schedule of the notebook and make it: saves the notebook first (the server
 * snapshots the saved file). Answers the schedule made, or null (cancelled, not saved).
 */
export async function scheduleNotebook(
  client: JupyterExtClient,
  context: DocumentRegistry.IContext<INotebookModel>
): Promise<ISchedule | null> {
  await context.ready;
  if (context.model.dirty || !context.contentsModel) {
    try {
      await context.save();
    } catch (err) {
      await showErrorMessage(
        'Save the notebook to schedule it',
        `A schedule runs a snapshot of the saved file, and saving failed: ${(err as Error).message ?? err}`
      );
      return null;
    }
  }
  const body = new ScheduleDialogBody(client, context.localPath);
  let created: ISchedule | null = null;
  const submit = async (): Promise<boolean> => {
    created = await submitSchedule(client, body);
    return created !== null;
  };
  const dialog = new SubmittingDialog<IScheduleSpec>(
    {
      title: 'Schedule notebook',
      body,
      buttons: [Dialog.cancelButton({ label: 'Cancel' }), Dialog.okButton({ label: 'Schedule' })],
      focusNodeSelector: 'input[data-field="cron"]'
    },
    1,
    submit
  );
  const result = await dialog.launch();
  return result.button.accept ? created : null;
}

/** Adds the Schedule… button beside Run on cluster in each notebook's toolbar. */
class ScheduleButtonExtension implements DocumentRegistry.IWidgetExtension<
  NotebookPanel,
  INotebookModel
> {
  constructor(private readonly app: JupyterFrontEnd) {}

  createNew(panel: NotebookPanel): IDisposable {
    const button = new ToolbarButton({
      icon: historyIcon,
      label: 'Schedule…',
      tooltip:
        'Run this notebook on a schedule (cron): a snapshot of it runs as a job at each time',
      onClick: () => void this.app.commands.execute(SCHEDULE_COMMAND, { panel: panel.id })
    });
    button.node.dataset.testid = 'jupyter-ext-schedule';
    button.addClass('jp-ext-ScheduleButton');
    if (!panel.toolbar.insertAfter('jupyterExtRun', 'jupyterExtSchedule', button)) {
      panel.toolbar.insertItem(11, 'jupyterExtSchedule', button);
    }
    panel.disposed.connect(() => button.dispose());
    return button;
  }
}

/** "Schedule notebook…": the command, its palette entry and the notebook toolbar button. */
export const schedulePlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-ext:schedule',
  description: 'Run a notebook on a schedule: the Schedule… button and command.',
  autoStart: true,
  requires: [INotebookTracker, IJupyterExtClient],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    client: JupyterExtClient,
    palette: ICommandPalette | null
  ) => {
    const target = (args: { panel?: unknown }): NotebookPanel | null =>
      args.panel ? (tracker.find(p => p.id === args.panel) ?? null) : tracker.currentWidget;
    app.commands.addCommand(SCHEDULE_COMMAND, {
      label: 'Schedule Notebook…',
      caption:
        'Run a snapshot of this notebook as a jupyter-ext job at the times of a cron expression',
      icon: historyIcon,
      isEnabled: args => target(args) !== null,
      execute: async args => {
        const panel = target(args);
        if (!panel) {
          return null;
        }
        const created = await scheduleNotebook(client, panel.context);
        if (created && app.commands.hasCommand(SHOW_SCHEDULES_COMMAND)) {
          await app.commands.execute(SHOW_SCHEDULES_COMMAND, { id: created.id });
        }
        return created;
      }
    });
    palette?.addItem({ command: SCHEDULE_COMMAND, category: 'Jobs' });
    app.docRegistry.addWidgetExtension('Notebook', new ScheduleButtonExtension(app));
  }
};
