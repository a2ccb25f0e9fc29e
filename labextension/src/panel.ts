/**
 * The Jobs side panel: your jobs with their status, steps and durations, and Cancel.
 */

import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';
import { JupyterExtClient } from './client';
import { IJob, Status, TERMINAL } from './tokens';

/** How long a job has run (so far, while it runs): `42s`, `2m05s`, `1h02m`. */
export function duration(
  job: Pick<IJob, 'started' | 'finished'>,
  now: number = Date.now()
): string {
  if (!job.started) {
    return '';
  }
  const end = job.finished ? Date.parse(job.finished) : now;
  const seconds = Math.max(0, Math.round((end - Date.parse(job.started)) / 1000));
  if (seconds >= 3600) {
    return `${Math.floor(seconds / 3600)}h${String(Math.floor(seconds / 60) % 60).padStart(2, '0')}m`;
  }
  return seconds >= 60
    ? `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`
    : `${seconds}s`;
}

function badge(status: Status, text: string = status.replace('_', ' ')): HTMLElement {
  const el = document.createElement('span');
  el.className = 'jp-ext-Badge';
  el.dataset.status = status;
  el.textContent = text;
  if (text !== status.replace('_', ' ')) {
    el.title = `${text}: ${status.replace('_', ' ')}`;
  }
  return el;
}

function button(label: string, focusKey: string, onclick: () => void): HTMLButtonElement {
  const el = document.createElement('button');
  el.type = 'button';
  el.className = 'jp-Button jp-mod-minimal';
  el.textContent = label;
  // Re-rendering replaces the buttons; this lets the keyboard focus survive a refresh.
  el.dataset.focusKey = focusKey;
  el.onclick = onclick;
  return el;
}

export class JobsPanel extends Widget {
  private timer: ReturnType<typeof setInterval> | null = null;
  private jobs: IJob[] = [];
  private listError = '';
  private actionError = '';
  private pending: Promise<void> | null = null;
  private readonly changed = new Signal<this, readonly IJob[]>(this);

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

  /** Emitted with the new list after every successful refresh. */
  get jobsChanged(): ISignal<this, readonly IJob[]> {
    return this.changed;
  }

  /** Fetch the list again; concurrent calls share one request. */
  refresh(): Promise<void> {
    if (!this.pending) {
      this.pending = this.load().finally(() => {
        this.pending = null;
      });
    }
    return this.pending;
  }

  private async load(): Promise<void> {
    try {
      this.jobs = await this.client.listJobs();
      this.listError = '';
      this.changed.emit(this.jobs);
    } catch (error: any) {
      this.listError = `Could not list jobs: ${String(error?.message ?? error)}`;
    }
    if (!this.isDisposed) {
      this.render();
    }
  }

  private async cancel(job: IJob): Promise<void> {
    // A failed action stays on screen until the next one, whatever the polls bring.
    this.actionError = '';
    try {
      await this.client.cancel(job.id);
    } catch (error: any) {
      this.actionError = `Could not cancel ${job.name}: ${String(error?.message ?? error)}`;
    }
    await this.refresh();
  }

  // Poll only while the panel can be seen: attached and not hidden behind another tab.
  protected onAfterAttach(): void {
    this.startPolling();
  }

  protected onAfterShow(): void {
    this.startPolling();
  }

  protected onBeforeHide(): void {
    this.stopPolling();
  }

  protected onBeforeDetach(): void {
    this.stopPolling();
  }

  dispose(): void {
    this.stopPolling();
    super.dispose();
  }

  private startPolling(): void {
    if (this.timer === null && this.isVisible) {
      void this.refresh();
      this.timer = setInterval(() => void this.refresh(), this.refreshMs);
    }
  }

  private stopPolling(): void {
    if (this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Draw the list from the last answer (and the last errors, if any). */
  render(): void {
    const root = this.node;
    const focused = (document.activeElement as HTMLElement | null)?.dataset?.focusKey;
    root.textContent = '';
    const header = document.createElement('div');
    header.className = 'jp-ext-JobsPanel-header';
    const heading = document.createElement('h2');
    heading.className = 'jp-ext-JobsPanel-title';
    heading.textContent = 'Jobs';
    header.appendChild(heading);
    const reload = button('Refresh', 'refresh', () => void this.refresh());
    reload.title = 'Refresh the list of jobs';
    header.appendChild(reload);
    root.appendChild(header);
    const status = document.createElement('div');
    status.className = 'jp-ext-JobsPanel-error';
    status.setAttribute('role', 'status');
    status.setAttribute('aria-live', 'polite');
    const error = [this.actionError, this.listError].filter(Boolean).join('\n');
    status.textContent = error;
    status.hidden = !error;
    root.appendChild(status);
    if (this.jobs.length === 0) {
      const empty = document.createElement('div');
      empty.className = 'jp-ext-JobsPanel-empty';
      empty.textContent = 'No jobs yet. Run one with `jupyter-ext run NOTEBOOK.ipynb`.';
      root.appendChild(empty);
    } else {
      const list = document.createElement('ul');
      list.className = 'jp-ext-JobsPanel-list';
      list.setAttribute('aria-label', 'Jobs, newest first');
      for (const job of this.jobs) {
        list.appendChild(this.renderJob(job));
      }
      root.appendChild(list);
    }
    if (focused) {
      Array.from(root.querySelectorAll<HTMLElement>('[data-focus-key]'))
        .find(el => el.dataset.focusKey === focused)
        ?.focus();
    }
  }

  private renderJob(job: IJob): HTMLElement {
    const item = document.createElement('li');
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
      const cancel = button('Cancel', `cancel:${job.id}`, () => {
        cancel.disabled = true;
        void this.cancel(job);
      });
      cancel.classList.add('jp-ext-Job-cancel');
      cancel.setAttribute('aria-label', `Cancel job ${job.name}`);
      title.appendChild(cancel);
    }
    item.appendChild(title);
    const meta = document.createElement('div');
    meta.className = 'jp-ext-Job-meta';
    meta.appendChild(document.createTextNode(`${job.backend} · `));
    const created = document.createElement('time');
    created.dateTime = job.created;
    created.textContent = new Date(job.created).toLocaleString();
    meta.appendChild(created);
    const took = duration(job);
    if (took) {
      meta.appendChild(document.createTextNode(` · ${took}`));
    }
    item.appendChild(meta);
    if (job.steps.length > 1) {
      const steps = document.createElement('div');
      steps.className = 'jp-ext-Job-steps';
      steps.setAttribute('aria-label', 'Steps');
      for (const step of job.steps) {
        steps.appendChild(badge(step.status, step.name));
      }
      item.appendChild(steps);
    }
    if (job.error?.message) {
      const err = document.createElement('div');
      err.className = 'jp-ext-Job-error';
      err.textContent = String(job.error.message);
      item.appendChild(err);
    }
    return item;
  }
}
