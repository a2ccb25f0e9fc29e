/**
 * The job views in JupyterLab: the `jupyter-ext:open-job` command, a main-area widget per
 * job, and what its artifact buttons open (the executed HTML in a sandboxed frame, a copy of
 * the executed notebook beside the original).
 */

import { ILayoutRestorer, JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, MainAreaWidget, showDialog, WidgetTracker } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { listIcon } from '@jupyterlab/ui-components';
import { copyForOpening, IArtifactActions } from './artifacts';
import { JupyterExtClient } from './client';
import { HtmlView } from './htmlview';
import { jobLabel } from './jobstate';
import { IJobViewOptions, JobView } from './jobview';
import { notebookRunFor, whenNotebookRun } from './notebookrun';
import { JobsPanel } from './panel';
import { driveCells, labOpener } from './rerun';
import { SubmitDialogBody } from './submitdialog';
import { sweepValues } from './sweepview';
import { IJob, IRerunChoice } from './tokens';

export const CommandIDs = {
  openJob: 'jupyter-ext:open-job'
};

/** The job view as a main-area document. */
export function createJobView(options: IJobViewOptions): MainAreaWidget<JobView> {
  const content = new JobView(options);
  // MainAreaWidget keeps its title's label and caption in step with the content's.
  const widget = new MainAreaWidget({ content });
  widget.id = `jupyter-ext-job-${options.jobId}`;
  widget.title.icon = listIcon;
  widget.title.closable = true;
  return widget;
}

/**
 * Ask before a re-run: the "Run on cluster" dialog for the job's notebook, prefilled with the
 * job's parameters and backend, which the user may change. Null: cancelled.
 */
export async function confirmRerun(
  client: JupyterExtClient,
  job: IJob,
  fromStep: string | null,
  options: { fresh?: boolean } = {}
): Promise<IRerunChoice | null> {
  const what = fromStep
    ? `Re-run job ${jobLabel(job)} from step ${fromStep}: step ${fromStep} and the steps after it run again, the steps before it reuse this job's results.`
    : options.fresh
      ? `Run job ${jobLabel(job)} again ignoring cached results: every step runs again.`
      : `Re-run job ${jobLabel(job)}: the whole notebook runs again.`;
  const body = new SubmitDialogBody(client, job.notebook, {
    parameters: job.parameters,
    backend: job.backend,
    note: what,
    fresh: options.fresh,
    // A sweep runs again as a sweep of the same values (changeable in the dialog).
    ...(job.sweep
      ? {
          sweep: sweepValues(job.sweep),
          sweep_mode: job.sweep.mode,
          sweep_parallel: job.sweep.parallel
        }
      : {})
  });
  const result = await showDialog({
    title: fromStep ? `Re-run from step ${fromStep}` : options.fresh ? 'Run fresh' : 'Re-run',
    body,
    buttons: [Dialog.cancelButton({ label: 'Cancel' }), Dialog.okButton({ label: 'Re-run' })]
  });
  if (!result.button.accept || !result.value) {
    return null;
  }
  const { parameters, backend, fresh, sweep, sweep_mode, sweep_parallel } = result.value;
  return { parameters, backend, fresh, sweep, sweep_mode, sweep_parallel };
}

/**
 * Wire the job views into the application: the `jupyter-ext:open-job` command (args `{id}`),
 * opened by clicking a job in the panel; an open job's view is brought to front, not duplicated.
 */
export function activateJobViews(
  app: JupyterFrontEnd,
  client: JupyterExtClient,
  panel?: JobsPanel,
  restorer?: ILayoutRestorer | null
): void {
  const open = new Map<string, MainAreaWidget<JobView>>();
  // Job tabs come back after a page reload: the restorer reopens each by id.
  const tracker = new WidgetTracker<MainAreaWidget<JobView>>({ namespace: 'jupyter-ext-job' });
  if (restorer) {
    void restorer.restore(tracker, {
      command: CommandIDs.openJob,
      args: widget => ({ id: widget.content.jobId }),
      name: widget => widget.content.jobId
    });
  }
  const opener = labOpener(app, { find: notebookRunFor, when: whenNotebookRun });
  /**
   * A re-run was submitted (from a job view or the panel): its view opens, and its notebook's
   * cells follow it as after a run from the toolbar, the notebook opened beside the view if it
   * was not open. Why they cannot (the notebook is gone) is said in the new job's view.
   */
  const rerunStarted = async (created: IJob) => {
    const view = (await app.commands.execute(CommandIDs.openJob, { id: created.id })) as
      MainAreaWidget<JobView> | undefined;
    void panel?.refresh();
    let note: string | null;
    try {
      note = await driveCells(created, opener, view?.id);
    } catch (error: any) {
      note = `The cells of ${created.notebook} could not follow job ${created.id}: ${String(error?.message ?? error)}`;
    }
    if (note && view && !view.isDisposed) {
      view.content.notify(note);
    }
  };
  const openHtml = (label: string, html: string) => {
    const view = new MainAreaWidget({ content: new HtmlView(html, label) });
    view.title.closable = true;
    app.shell.add(view, 'main', { mode: 'split-right' });
    app.shell.activateById(view.id);
  };
  /**
   * Save a copy of an executed notebook beside the job's notebook and open it; a copy saved
   * before (and maybe edited since) is opened as it is, never overwritten.
   */
  const openNotebook = async (job: IJob, step: string, name: string, content: unknown) => {
    const contents = app.serviceManager.contents;
    const dir = PathExt.dirname(job.notebook);
    const suffix = name === 'executed.ipynb' ? '' : `.${step}`;
    const file = `${PathExt.basename(job.notebook, '.ipynb')}.${job.id}${suffix}.executed.ipynb`;
    const path = PathExt.join(dir, file);
    // List the folder rather than ask for the file: a missing file would log a 404.
    const listing = await contents.get(dir, { type: 'directory', content: true });
    const exists = (listing.content as { name: string }[]).some(item => item.name === file);
    if (!exists) {
      await contents.save(path, {
        type: 'notebook',
        format: 'json',
        content: copyForOpening(content)
      });
    }
    await app.commands.execute('docmanager:open', { path });
  };
  app.commands.addCommand(CommandIDs.openJob, {
    label: args => (args.id ? `Open Job ${args.id}` : 'Open Job'),
    caption: 'Show a jupyter-ext job: its steps, logs and artifacts',
    execute: args => {
      const id = String(args.id ?? '');
      if (!id) {
        return;
      }
      let widget = open.get(id);
      if (!widget || widget.isDisposed) {
        let view: JobView | null = null;
        const actions: IArtifactActions = {
          openHtml,
          openNotebook: async (step, name, content) => {
            const job = view?.shown;
            if (job) {
              await openNotebook(job, step, name, content);
            }
          }
        };
        widget = createJobView({
          client,
          jobId: id,
          // A sweep's child, a cached step's job, a child's sweep (a re-run's view: onRerun).
          openJob: other => void app.commands.execute(CommandIDs.openJob, { id: other }),
          actions,
          confirmRerun: (job, fromStep, options) => confirmRerun(client, job, fromStep, options),
          // The re-run drives the cells of its notebook, as a run from its toolbar does.
          onRerun: created => void rerunStarted(created)
        });
        view = widget.content;
        open.set(id, widget);
        widget.disposed.connect(() => open.delete(id));
        void tracker.add(widget);
      }
      if (!widget.isAttached) {
        app.shell.add(widget, 'main');
      }
      app.shell.activateById(widget.id);
      return widget;
    }
  });
  panel?.jobActivated.connect((_, job) => {
    void app.commands.execute(CommandIDs.openJob, { id: job.id });
  });
  if (panel) {
    // The panel's Re-run: the same question first, then the same way into the cells.
    panel.rerunActions = {
      confirm: job => confirmRerun(client, job, null),
      started: created => void rerunStarted(created)
    };
  }
}
