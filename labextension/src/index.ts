import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { listIcon } from '@jupyterlab/ui-components';
import { JupyterExtClient } from './client';
import { JobsPanel } from './panel';

/** Command ids. */
const CommandIDs = {
  refreshJobs: 'jupyter-ext:refresh-jobs'
};

/**
 * The Jobs panel in the right sidebar. It needs only the front end's shell, so it also
 * loads in Notebook 7.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-ext:plugin',
  description: 'Run notebook cells as jobs and follow them from JupyterLab.',
  autoStart: true,
  optional: [ICommandPalette],
  activate: (app: JupyterFrontEnd, palette: ICommandPalette | null) => {
    const client = new JupyterExtClient(
      ServerConnection.makeSettings(),
      ServerConnection.makeRequest
    );
    const panel = new JobsPanel(client);
    panel.title.icon = listIcon;
    app.shell.add(panel, 'right', { rank: 900 });
    app.commands.addCommand(CommandIDs.refreshJobs, {
      label: 'Refresh Jobs',
      caption: 'Fetch the list of jupyter-ext jobs again',
      execute: () => panel.refresh()
    });
    palette?.addItem({ command: CommandIDs.refreshJobs, category: 'Jobs' });
  }
};

export default plugin;
