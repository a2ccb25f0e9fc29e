/**
 * The `%%remote` status line: state, elapsed time, cells done, and a Cancel button.
 *
 * The magic publishes it as a MIME bundle and updates it in place (display_id) while the cell
 * runs. The button calls the REST API directly from the page, so it works while the kernel is
 * busy waiting for the job (a widget's click would queue behind the running cell).
 */

import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

export const JOB_STATUS_MIME = 'application/vnd.jupyter-ext.job-status+json';

export interface IJobStatusData {
  job: string;
  state: string;
  elapsed: number;
  cells: number;
  /** false when the job runs in the kernel's own process (no server to cancel through) */
  cancellable?: boolean;
}

const TERMINAL_STATES = new Set(['succeeded', 'failed', 'cancelled']);

export class JobStatusRenderer extends Widget implements IRenderMime.IRenderer {
  private readonly label = document.createElement('code');
  private readonly button = document.createElement('button');
  private job = '';

  constructor(private readonly cancel: (job: string) => Promise<unknown>) {
    super();
    this.addClass('jp-ext-JobStatus');
    this.button.className = 'jp-Button jp-mod-styled jp-mod-warn jp-ext-JobStatus-cancel';
    this.button.textContent = 'Cancel';
    this.button.onclick = async () => {
      this.button.disabled = true;
      this.button.textContent = 'Cancelling…';
      try {
        await this.cancel(this.job);
      } catch (error: any) {
        this.button.textContent = 'Cancel failed';
        this.button.title = String(error?.message ?? error);
        this.button.disabled = false;
      }
    };
    this.node.appendChild(this.label);
    this.node.appendChild(this.button);
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const data = model.data[JOB_STATUS_MIME] as unknown as IJobStatusData;
    this.job = data.job;
    this.label.textContent = `job ${data.job}: ${data.state} · ${Math.round(data.elapsed)}s · ${data.cells} cell(s) done`;
    const terminal = TERMINAL_STATES.has(data.state);
    this.button.hidden = terminal || data.cancellable === false;
    this.button.setAttribute('aria-label', `Cancel job ${data.job}`);
  }
}

export function jobStatusFactory(
  cancel: (job: string) => Promise<unknown>
): IRenderMime.IRendererFactory {
  return {
    safe: true,
    mimeTypes: [JOB_STATUS_MIME],
    defaultRank: 10,
    createRenderer: () => new JobStatusRenderer(cancel)
  };
}
