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
  /** The job the server said had already ended; a stale model of it does not bring Cancel back. */
  private ended = '';

  constructor(private readonly cancel: (job: string) => Promise<unknown>) {
    super();
    this.addClass('jp-ext-JobStatus');
    this.button.className = 'jp-Button jp-mod-styled jp-mod-warn jp-ext-JobStatus-cancel';
    this.button.textContent = 'Cancel';
    this.button.onclick = async () => {
      this.button.disabled = true;
      this.button.textContent = 'Cancelling…';
      try {
        const job = (await this.cancel(this.job)) as { status?: unknown } | undefined;
        const status = typeof job?.status === 'string' ? job.status : '';
        if (TERMINAL_STATES.has(status)) {
          // The job had ended before the click: say so instead of waiting for a cancel that never comes.
          this.ended = this.job;
          this.label.textContent = `job ${this.job}: ${status} (it had already finished; nothing to cancel)`;
          this.showButton(false);
          this.button.textContent = 'Cancel';
          this.button.disabled = false;
        }
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
    const terminal = TERMINAL_STATES.has(data.state);
    if (!terminal && data.job === this.ended) {
      return; // the server said this job had ended; the kernel's update is older
    }
    this.job = data.job;
    this.label.textContent = `job ${data.job}: ${data.state} · ${Math.round(data.elapsed)}s · ${data.cells} cell(s) done`;
    this.showButton(!terminal && data.cancellable !== false);
    this.button.setAttribute('aria-label', `Cancel job ${data.job}`);
  }

  /** `hidden` alone loses to any stylesheet that sets `display` (Lab's buttons do), so say it inline. */
  private showButton(show: boolean): void {
    this.button.hidden = !show;
    this.button.style.display = show ? '' : 'none';
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
