import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { JupyterExtClient } from './client';
import { JobsPanel } from './panel';

const REFRESH = 'jupyter-ext:refresh-jobs';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-ext:plugin',
  description: 'Run notebook cells as jobs and follow them from JupyterLab.',
  autoStart: true,
  requires: [ILabShell],
  optional: [ICommandPalette],
  activate: (app: JupyterFrontEnd, shell: ILabShell, palette: ICommandPalette | null) => {
    const settings = ServerConnection.makeSettings();
    const client = new JupyterExtClient(settings, ServerConnection.makeRequest);
    const panel = new JobsPanel(client);
    shell.add(panel, 'right', { rank: 900 });
    app.commands.addCommand(REFRESH, {
      label: 'Refresh jupyter-ext jobs',
      execute: () => panel.refresh()
    });
    palette?.addItem({ command: REFRESH, category: 'jupyter-ext' });
  }
};

export default plugin;
