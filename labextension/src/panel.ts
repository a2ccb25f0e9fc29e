/**
 * The Jobs side panel: your jobs with their status, steps and durations, and Cancel.
 */

import { Widget } from '@lumino/widgets';
import { JupyterExtClient } from './client';
import { IJob, Status, TERMINAL } from './tokens';

export function duration(
  job: Pick<IJob, 'started' | 'finished'>,
  now: number = Date.now()
): string {
  if (!job.started) {
    return '';
  }
  const end = job.finished ? Date.parse(job.finished) : now;
  const seconds = Math.max(0, Math.round((end - Date.parse(job.started)) / 1000));
  return seconds >= 60
    ? `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`
    : `${seconds}s`;
}

function badge(status: Status, text: string = status.replace('_', ' ')): HTMLElement {
  const el = document.createElement('span');
  el.className = 'jp-ext-Badge';
  el.dataset.status = status;
  el.textContent = text;
  return el;
}

export class JobsPanel extends Widget {
  private timer: ReturnType<typeof setInterval> | null = null;
  private jobs: IJob[] = [];

  constructor(
    private readonly client: JupyterExtClient,
    private readonly refreshMs = 3000
  ) {
    super();
    this.id = 'jupyter-ext-jobs';
    this.addClass('jp-ext-JobsPanel');
    this.title.caption = 'Jobs';
    this.title.label = 'Jobs';
    this.render();
  }

  /** Jobs currently shown. */
  get shown(): readonly IJob[] {
    return this.jobs;
  }

  async refresh(): Promise<void> {
    try {
      this.jobs = await this.client.listJobs();
      this.render();
    } catch (error: any) {
      this.render(String(error?.message ?? error));
    }
  }

  protected onAfterShow(): void {
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.refreshMs);
  }

  protected onBeforeHide(): void {
    if (this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  dispose(): void {
    this.onBeforeHide();
    super.dispose();
  }

  render(error?: string): void {
    const root = this.node;
    root.textContent = '';
    const header = document.createElement('div');
    header.className = 'jp-ext-JobsPanel-header';
    header.textContent = 'Jobs';
    const reload = document.createElement('button');
    reload.className = 'jp-Button jp-mod-minimal';
    reload.textContent = 'Refresh';
    reload.title = 'Refresh the list of jobs';
    reload.onclick = () => void this.refresh();
    header.appendChild(reload);
    root.appendChild(header);
    if (error) {
      const el = document.createElement('div');
      el.className = 'jp-ext-JobsPanel-error';
      el.textContent = error;
      root.appendChild(el);
    }
    if (this.jobs.length === 0) {
      const empty = document.createElement('div');
      empty.className = 'jp-ext-JobsPanel-empty';
      empty.textContent = 'No jobs yet. Run one with `jupyter-ext run NOTEBOOK.ipynb`.';
      root.appendChild(empty);
      return;
    }
    for (const job of this.jobs) {
      root.appendChild(this.renderJob(job));
    }
  }

  private renderJob(job: IJob): HTMLElement {
    const item = document.createElement('div');
    item.className = 'jp-ext-Job';
    item.dataset.jobId = job.id;
    const title = document.createElement('div');
    title.className = 'jp-ext-Job-title';
    const name = document.createElement('span');
    name.className = 'jp-ext-Job-name';
    name.textContent = job.name;
    name.title = `${job.notebook} (${job.id})`;
    title.appendChild(name);
    title.appendChild(badge(job.status));
    if (!TERMINAL.has(job.status)) {
      const cancel = document.createElement('button');
      cancel.className = 'jp-Button jp-mod-minimal jp-ext-Job-cancel';
      cancel.textContent = 'Cancel';
      cancel.onclick = async () => {
        cancel.disabled = true;
        try {
          await this.client.cancel(job.id);
        } finally {
          await this.refresh();
        }
      };
      title.appendChild(cancel);
    }
    item.appendChild(title);
    const meta = document.createElement('div');
    meta.className = 'jp-ext-Job-meta';
    const when = new Date(job.created).toLocaleString();
    meta.textContent = [job.backend, when, duration(job)].filter(Boolean).join(' · ');
    item.appendChild(meta);
    if (job.steps.length > 1) {
      const steps = document.createElement('div');
      steps.className = 'jp-ext-Job-steps';
      for (const step of job.steps) {
        steps.appendChild(badge(step.status, step.name));
      }
      item.appendChild(steps);
    }
    if (job.error && job.error.message) {
      const err = document.createElement('div');
      err.className = 'jp-ext-JobsPanel-error';
      err.textContent = String(job.error.message);
      item.appendChild(err);
    }
    return item;
  }
}
