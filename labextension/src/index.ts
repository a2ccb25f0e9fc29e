import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ServerConnection } from '@jupyterlab/services';
import { listIcon } from '@jupyterlab/ui-components';
import { JupyterExtClient } from './client';
import { jobStatusFactory } from './jobstatus';
import { activateJobViews } from './jobplugin';
import { notebookRunFor, notebookRunPlugin } from './notebookrun';
import { JobsPanel } from './panel';
import { confirmDelete, schedulePlugin, SHOW_SCHEDULES_COMMAND } from './scheduledialog';
import { SchedulesSection } from './schedules';
import { IJupyterExtClient } from './tokens';

/** Command ids. */
const CommandIDs = {
  refreshJobs: 'jupyter-ext:refresh-jobs',
  refreshSchedules: 'jupyter-ext:refresh-schedules',
  showSchedules: SHOW_SCHEDULES_COMMAND
};

/** The one client of the jupyter-ext API, for every plugin that `requires` IJupyterExtClient. */
const clientPlugin: JupyterFrontEndPlugin<JupyterExtClient> = {
  id: 'jupyter-ext:client',
  description: 'The client of the jupyter-ext API (jobs, events, plans, tag checks).',
  autoStart: true,
  provides: IJupyterExtClient,
  activate: () =>
    new JupyterExtClient(ServerConnection.makeSettings(), ServerConnection.makeRequest)
};

/**
 * The Jobs panel in the right sidebar. It needs only the front end's shell, so it also
 * loads in Notebook 7.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-ext:plugin',
  description: 'Run notebook cells as jobs and follow them from JupyterLab.',
  autoStart: true,
  requires: [IJupyterExtClient],
  optional: [ICommandPalette, IRenderMimeRegistry, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    client: JupyterExtClient,
    palette: ICommandPalette | null,
    rendermime: IRenderMimeRegistry | null,
    restorer: ILayoutRestorer | null
  ) => {
    const panel = new JobsPanel(client);
    panel.title.icon = listIcon;
    app.shell.add(panel, 'right', { rank: 900 });
    app.commands.addCommand(CommandIDs.refreshJobs, {
      label: 'Refresh Jobs',
      caption: 'Fetch the list of jupyter-ext jobs again',
      execute: () => panel.refresh()
    });
    palette?.addItem({ command: CommandIDs.refreshJobs, category: 'Jobs' });
    // The Schedules section below the jobs: its runs open like jobs.
    const schedules = new SchedulesSection(client, confirmDelete);
    schedules.beforeSnapshot = async schedule => {
      // The snapshot is of the saved file: save the notebook first if it is open with changes.
      const run = notebookRunFor(schedule.notebook);
      if (run && run.context.model.dirty) {
        await run.context.save();
      }
    };
    panel.addSection(schedules);
    schedules.jobActivated.connect((_, id) => {
      void app.commands.execute('jupyter-ext:open-job', { id });
    });
    app.commands.addCommand(CommandIDs.refreshSchedules, {
      label: 'Refresh Schedules',
      caption: 'Fetch the list of jupyter-ext schedules again',
      execute: () => schedules.refresh()
    });
    palette?.addItem({ command: CommandIDs.refreshSchedules, category: 'Jobs' });
    app.commands.addCommand(CommandIDs.showSchedules, {
      label: 'Show Schedules',
      caption: 'Open the Jobs panel on its schedules',
      execute: async args => {
        app.shell.activateById(panel.id);
        await schedules.reveal(args.id ? String(args.id) : undefined);
      }
    });
    palette?.addItem({ command: CommandIDs.showSchedules, category: 'Jobs' });
    // Clicking a job in the panel opens its view (command `jupyter-ext:open-job`, args {id}).
    activateJobViews(app, client, panel, restorer);
    // The %%remote status line (with a Cancel button that works while the kernel is busy).
    rendermime?.addFactory(jobStatusFactory(job => client.cancel(job)));
  }
};

/**
 * Every plugin of the extension. Each feature appends its own plugin here (one list, so
 * JupyterLab loads them all from this module's default export).
 */
const plugins: JupyterFrontEndPlugin<any>[] = [
  clientPlugin,
  plugin,
  notebookRunPlugin,
  schedulePlugin
];

export default plugins;
