/**
 * The Jobs side panel: your jobs with their status, per-step progress, durations and backend,
 * and Cancel. Running jobs are followed over their event streams, so progress moves as cells
 * finish; the list itself is fetched again every few seconds while the panel is in sight.
 * Clicking a job opens its job view.
 */

import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';
import { JupyterExtClient } from './client';
import { duration, el, progressBar, statusBadge, statusText } from './dom';
import {
  jobDetails,
  jobLabel,
  ProgressTracker,
  rerunSpec,
  STATUS_EVENTS,
  stepDuration,
  stepFraction
} from './jobstate';
import { hasNotebook } from './rerun';
import { sweepProgress } from './sweepview';
import { IEventStream, IJob, IRerunChoice, IStep, TERMINAL } from './tokens';

/** At most this many running jobs are followed live at once (one WebSocket each). */
export const MAX_FOLLOWED = 10;

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

/** What the panel's Re-run does around its submit (given by the job views' plugin). */
export interface IPanelRerun {
  /** Ask first (the Run dialog with the job's values); null: submit nothing. */
  confirm(job: IJob): Promise<IRerunChoice | null>;
  /** The re-run was submitted: show it (its view, its notebook's cells). */
  started(created: IJob, of: IJob): void;
}

/**
 * A part of the panel below the jobs (the schedules, schedules.ts): its own node, which the
 * panel keeps in place across its redraws, and a refresh the panel calls with its own.
 */
export interface IPanelSection {
  readonly node: HTMLElement;
  refresh(): Promise<void>;
}

export class JobsPanel extends Widget {
  /** Re-run for finished jobs (a button on their rows) once set. */
  rerunActions: IPanelRerun | null = null;
  /** Jobs whose Re-run is under way (asking or submitting): their button is off meanwhile. */
  private readonly rerunning = new Set<string>();
  private timer: ReturnType<typeof setInterval> | null = null;
  private jobs: IJob[] = [];
  private listError = '';
  private actionError = '';
  private pending: Promise<void> | null = null;
  private readonly changed = new Signal<this, readonly IJob[]>(this);
  private readonly activated = new Signal<this, IJob>(this);
  private readonly followed = new Map<string, { stream: IEventStream; tracker: ProgressTracker }>();
  /** The events seen of jobs followed live, kept once they end: steps' durations come from them. */
  private readonly trackers = new Map<string, ProgressTracker>();
  private renderTimer: ReturnType<typeof setTimeout> | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly sections: IPanelSection[] = [];

  constructor(
    private readonly client: JupyterExtClient,
    private readonly refreshMs = 3000
  ) {
    super();
    this.id = 'jupyter-ext-jobs-panel';
    this.node.dataset.testid = 'jupyter-ext-jobs-panel';
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

  /** Emitted with a job when the user opens it (a click on its row, or Enter). */
  get jobActivated(): ISignal<this, IJob> {
    return this.activated;
  }

  /** Ids of the running jobs followed live now. */
  get following(): string[] {
    return [...this.followed.keys()];
  }

  /** Show `section` below the jobs; it is refreshed whenever the list is. */
  addSection(section: IPanelSection): void {
    this.sections.push(section);
    this.render();
  }

  /** Fetch the list again; concurrent calls share one request. */
  refresh(): Promise<void> {
    for (const section of this.sections) {
      void section.refresh(); // says its own errors
    }
    if (!this.pending) {
      this.pending = this.load().finally(() => {
        this.pending = null;
      });
    }
    return this.pending;
  }

  private async load(): Promise<void> {
    try {
      // A sweep's children are in its row (and its view), not rows of their own.
      this.jobs = (await this.client.listJobs()).filter(j => !j.parent);
      const listed = new Set(this.jobs.map(j => j.id));
      for (const id of this.trackers.keys()) {
        if (!listed.has(id)) {
          this.trackers.delete(id);
        }
      }
      this.listError = '';
      this.changed.emit(this.jobs);
    } catch (error: any) {
      this.listError = `Could not list jobs: ${String(error?.message ?? error)}`;
    }
    this.follow();
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

  /** Re-run a finished job: ask (as the job view's Re-run does), submit, then show the new one. */
  async rerun(job: IJob): Promise<IJob | null> {
    const actions = this.rerunActions;
    if (!actions || this.rerunning.has(job.id)) {
      return null;
    }
    this.actionError = '';
    this.rerunning.add(job.id);
    this.render();
    try {
      const choice = await actions.confirm(job);
      if (!choice) {
        return null; // the user thought better of it: nothing submitted
      }
      const created = await this.client.submit(rerunSpec(job, choice, null));
      actions.started(created, job);
      return created;
    } catch (error: any) {
      this.actionError = `Could not re-run ${job.name}: ${String(error?.message ?? error)}`;
      return null;
    } finally {
      this.rerunning.delete(job.id);
      await this.refresh();
    }
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
    for (const timer of [this.renderTimer, this.refreshTimer]) {
      if (timer !== null) {
        clearTimeout(timer);
      }
    }
    super.dispose();
  }

  /**
   * Follow the running jobs' event streams (the newest MAX_FOLLOWED of them): cell ends move
   * the progress bars, status events fetch the list again. Streams of jobs that ended or
   * left the list are closed.
   */
  private follow(): void {
    if (this.isDisposed || this.timer === null) {
      return; // not in sight: nothing to follow
    }
    const wanted = new Set(
      this.jobs
        .filter(j => !TERMINAL.has(j.status))
        .slice(0, MAX_FOLLOWED)
        .map(j => j.id)
    );
    for (const [id, { stream }] of this.followed) {
      if (!wanted.has(id)) {
        stream.dispose();
        this.followed.delete(id);
      }
    }
    for (const id of wanted) {
      if (this.followed.has(id)) {
        continue;
      }
      const tracker = this.trackers.get(id) ?? new ProgressTracker();
      this.trackers.set(id, tracker);
      const stream = this.client.streamEvents(id, 0, event => {
        tracker.add(event);
        if (STATUS_EVENTS.has(event.type)) {
          this.refreshSoon();
        } else if (event.type === 'cell.end') {
          this.renderSoon();
        }
      });
      this.followed.set(id, { stream, tracker });
    }
  }

  private unfollow(): void {
    for (const { stream } of this.followed.values()) {
      stream.dispose();
    }
    this.followed.clear();
  }

  private renderSoon(): void {
    if (this.renderTimer === null) {
      this.renderTimer = setTimeout(() => {
        this.renderTimer = null;
        if (!this.isDisposed) {
          this.render();
        }
      }, 150);
    }
  }

  private refreshSoon(): void {
    if (this.refreshTimer === null) {
      this.refreshTimer = setTimeout(() => {
        this.refreshTimer = null;
        if (!this.isDisposed) {
          void this.refresh();
        }
      }, 150);
    }
  }

  private startPolling(): void {
    if (this.timer === null && this.isVisible) {
      this.timer = setInterval(() => void this.refresh(), this.refreshMs);
      void this.refresh();
    }
  }

  private stopPolling(): void {
    if (this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
    this.unfollow();
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
    for (const section of this.sections) {
      root.appendChild(section.node);
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
    item.dataset.testid = 'jupyter-ext-job-row';
    item.dataset.job = job.id;
    item.dataset.status = job.status;
    // The whole row opens the job; its buttons do their own thing.
    item.onclick = (event: MouseEvent) => {
      if (!(event.target as HTMLElement).closest('button:not(.jp-ext-Job-open)')) {
        this.activated.emit(job);
      }
    };
    const title = document.createElement('div');
    title.className = 'jp-ext-Job-title';
    const name = document.createElement('button');
    name.type = 'button';
    name.className = 'jp-ext-Job-open';
    name.textContent = job.name;
    name.title = `Open job ${job.name}: ${job.notebook} (${job.id})`;
    name.dataset.focusKey = `open:${job.id}`;
    title.appendChild(name);
    // Jobs of one notebook told apart: the parameters they were given and a short id.
    const details = el('span', 'jp-ext-Job-details', jobDetails(job, 32));
    details.dataset.testid = 'jupyter-ext-job-details';
    details.title = `job ${job.id}`;
    title.appendChild(details);
    title.appendChild(statusBadge(job.status, statusText(job)));
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
    const facts = document.createElement('span');
    facts.appendChild(document.createTextNode(`${job.backend} · `));
    const created = document.createElement('time');
    created.dateTime = job.created;
    created.textContent = new Date(job.created).toLocaleString();
    facts.appendChild(created);
    const took = duration(job);
    if (took) {
      facts.appendChild(document.createTextNode(` · ${took}`));
    }
    meta.appendChild(facts);
    // On the second line, so the title line keeps its room for the parameters and short id.
    if (TERMINAL.has(job.status) && this.rerunActions && hasNotebook(job)) {
      const rerun = button('Re-run', `rerun:${job.id}`, () => void this.rerun(job));
      rerun.classList.add('jp-ext-Job-rerun');
      rerun.dataset.testid = 'jupyter-ext-job-rerun';
      rerun.disabled = this.rerunning.has(job.id);
      rerun.setAttribute('aria-label', `Re-run job ${jobLabel(job)}`);
      rerun.title =
        'Run the same notebook again: shows its parameters and backend (this job’s) to check or change first; its cells show the new run';
      meta.appendChild(rerun);
      meta.classList.add('jp-mod-actions');
    }
    item.appendChild(meta);
    if (job.sweep) {
      item.appendChild(this.renderSweep(job));
    }
    if (job.steps.length) {
      const tracker = this.trackers.get(job.id);
      const steps = document.createElement('div');
      steps.className = 'jp-ext-Job-steps';
      steps.setAttribute('aria-label', 'Steps');
      for (const step of job.steps) {
        steps.appendChild(this.renderStep(step, tracker));
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

  /** A sweep's row: how many of its runs ended, of how many (its children have no rows). */
  private renderSweep(job: IJob): HTMLElement {
    const { done, total, failed } = sweepProgress(job.sweep!);
    const line = el('div', 'jp-ext-Job-sweep');
    line.dataset.testid = 'jupyter-ext-sweep-progress';
    const bar = progressBar(
      { name: 'sweep', status: job.status, cells: [] },
      total ? done / total : 0,
      0
    );
    bar.setAttribute('aria-label', `Sweep: ${done} of ${total} runs done`);
    bar.title = `${done} of ${total} runs done`;
    const text = el(
      'span',
      'jp-ext-Job-sweepText',
      `sweep · ${done}/${total} done` + (failed ? ` · ${failed} failed` : '')
    );
    text.dataset.testid = 'jupyter-ext-sweep-done';
    line.append(text, bar);
    return line;
  }

  /** One step of a job: name, progress bar, duration. */
  private renderStep(step: IStep, tracker: ProgressTracker | undefined): HTMLElement {
    const cellsDone = tracker?.cellsDone(step.name, step.cells) ?? 0;
    const row = document.createElement('div');
    row.className = 'jp-ext-StepProgress';
    row.dataset.testid = 'jupyter-ext-step-progress';
    row.dataset.step = step.name;
    row.dataset.status = step.status;
    const name = document.createElement('span');
    name.className = 'jp-ext-StepProgress-name';
    name.textContent = step.name;
    row.appendChild(name);
    row.appendChild(progressBar(step, stepFraction(step, cellsDone), cellsDone));
    const took = document.createElement('span');
    took.className = 'jp-ext-StepProgress-duration';
    const cached = step.cache?.hit ? step.cache.from : null;
    took.textContent = cached ? 'cached' : stepDuration(step, tracker);
    if (cached) {
      took.dataset.testid = 'jupyter-ext-step-cached';
      took.title = `cached from job ${cached.job}: not run again, its inputs did not change`;
      took.setAttribute('aria-label', `step ${step.name}: cached from job ${cached.job}`);
    }
    row.appendChild(took);
    return row;
  }
}
