/**
 * The Schedules section of the Jobs panel: each of the user's schedules with its notebook, its
 * cron expression and time zone (in words where they are common), the next run (local time and
 * "in 3 h"), whether it is paused, its last runs as status dots that open their jobs, and
 * Pause/Resume, Update snapshot and Delete. The panel refreshes it with the jobs; every action
 * refreshes it again, and what the server answered when something failed is shown in words.
 */

import { ISignal, Signal } from '@lumino/signaling';
import { JupyterExtClient } from './client';
import { describeCron, localTime, relativeTime, toMs } from './crontext';
import { el } from './dom';
import { ISchedule, IScheduleRun, STATUS_WORDS } from './tokens';

/** What the snapshot note says (the words are part of the issue: keep them). */
export function snapshotNote(schedule: ISchedule, now: number = Date.now()): string {
  const taken = toMs(schedule.snapshot_taken ?? schedule.created);
  const when =
    taken === null ? 'when it was made' : `${localTime(taken)} (${relativeTime(taken, now)})`;
  return `Runs use a snapshot of the notebook taken ${when}; editing the notebook does not change them until you update the snapshot.`;
}

/** `every day at 02:00 · Europe/Berlin` (the cron expression itself when it has no words). */
export function whenText(schedule: Pick<ISchedule, 'cron' | 'timezone'>): string {
  return `${describeCron(schedule.cron) ?? `cron ${schedule.cron}`} · ${schedule.timezone}`;
}

/** `Next run Tue, 24 Nov, 02:00 · in 3 h`, or why there is none. */
export function nextRunText(schedule: ISchedule, now: number = Date.now()): string {
  if (schedule.paused) {
    return 'Paused: no next run';
  }
  const next = toMs(schedule.next_run);
  if (next === null) {
    return 'No next run';
  }
  return next <= now
    ? `Next run ${localTime(next)} · due now`
    : `Next run ${localTime(next)} · ${relativeTime(next, now)}`;
}

/** A run's status for its dot: the job's, or `error` when no job was made. */
export function runStatus(run: IScheduleRun): string {
  if (run.status) {
    return run.status;
  }
  return run.job ? 'unknown' : run.error ? 'error' : 'skipped';
}

/** A run in words, for its dot's label and tooltip. */
export function runText(run: IScheduleRun): string {
  const due = toMs(run.due);
  const when = due === null ? 'run' : `run due ${localTime(due)}`;
  if (run.job) {
    const status = run.status ? STATUS_WORDS[run.status] : 'job no longer listed';
    return `${when}: ${status} (job ${run.job})`;
  }
  return `${when}: ${run.error ?? 'no job was made'}`;
}

function actionButton(label: string, testid: string, focusKey: string): HTMLButtonElement {
  const button = el('button', 'jp-Button jp-mod-minimal jp-ext-Schedule-action', label);
  button.type = 'button';
  button.dataset.testid = testid;
  // Re-rendering replaces the buttons; this lets the keyboard focus survive a refresh.
  button.dataset.focusKey = focusKey;
  return button;
}

/** The schedules, as a section the Jobs panel shows below its jobs. */
export class SchedulesSection {
  readonly node: HTMLElement;
  /** Called before a new snapshot is taken (the plugin saves the open notebook first). */
  beforeSnapshot: ((schedule: ISchedule) => Promise<void>) | null = null;
  /** The clock the relative times are read against (tests fix it). */
  now: () => number = () => Date.now();
  private schedules: ISchedule[] = [];
  private loaded = false;
  private listError = '';
  private actionError = '';
  private expanded = true;
  private highlight: string | null = null;
  private pending: Promise<void> | null = null;
  private readonly busy = new Set<string>();
  private readonly activated = new Signal<this, string>(this);
  private readonly changed = new Signal<this, readonly ISchedule[]>(this);

  /**
   * `confirmDelete` asks the user before a schedule is deleted (true: delete); the plugin
   * gives a JupyterLab dialog (scheduledialog.ts).
   */
  constructor(
    private readonly client: JupyterExtClient,
    public confirmDelete: (schedule: ISchedule) => Promise<boolean>
  ) {
    this.node = el('section', 'jp-ext-Schedules');
    this.node.dataset.testid = 'jupyter-ext-schedules';
    this.render();
  }

  /** Schedules shown now. */
  get shown(): readonly ISchedule[] {
    return this.schedules;
  }

  /** Whether the list is open (the header folds it). */
  get isExpanded(): boolean {
    return this.expanded;
  }

  /** Emitted with a job's id when the user opens one of the runs. */
  get jobActivated(): ISignal<this, string> {
    return this.activated;
  }

  /** Emitted with the new list after every successful refresh. */
  get schedulesChanged(): ISignal<this, readonly ISchedule[]> {
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

  /** Open the section, fetch the list and bring `id` (a schedule just made) into sight. */
  async reveal(id?: string): Promise<void> {
    this.expanded = true;
    this.highlight = id ?? null;
    await this.refresh();
    const row = id ? this.row(id) : null;
    row?.scrollIntoView?.({ block: 'nearest' });
  }

  /** Fold or unfold the list. */
  toggle(expanded: boolean = !this.expanded): void {
    this.expanded = expanded;
    this.render();
  }

  private async load(): Promise<void> {
    try {
      this.schedules = await this.client.schedules();
      this.loaded = true;
      this.listError = '';
      this.changed.emit(this.schedules);
    } catch (error: any) {
      this.listError = `Could not list schedules: ${String(error?.message ?? error)}`;
    }
    this.render();
  }

  /** Pause: no run fires until Resume. */
  pause(schedule: ISchedule): Promise<void> {
    return this.act(schedule, 'pause', () =>
      this.client.updateSchedule(schedule.id, { paused: true })
    );
  }

  /** Resume: the next run is the next time the expression names from now on. */
  resume(schedule: ISchedule): Promise<void> {
    return this.act(schedule, 'resume', () =>
      this.client.updateSchedule(schedule.id, { paused: false })
    );
  }

  /** Take a new snapshot of the notebook: the next runs use the notebook as it is saved now. */
  updateSnapshot(schedule: ISchedule): Promise<void> {
    return this.act(schedule, 'update the snapshot of', async () => {
      await this.beforeSnapshot?.(schedule);
      return this.client.updateSchedule(schedule.id, { snapshot: true });
    });
  }

  /** Delete, once the user confirms (the jobs it made stay). */
  async remove(schedule: ISchedule): Promise<void> {
    if (this.busy.has(schedule.id) || !(await this.confirmDelete(schedule))) {
      return;
    }
    await this.act(schedule, 'delete', async () => {
      await this.client.deleteSchedule(schedule.id);
      this.schedules = this.schedules.filter(s => s.id !== schedule.id);
    });
  }

  private async act(
    schedule: ISchedule,
    what: string,
    call: () => Promise<ISchedule | void>
  ): Promise<void> {
    if (this.busy.has(schedule.id)) {
      return;
    }
    // A failed action stays on screen until the next one, whatever the polls bring.
    this.actionError = '';
    this.busy.add(schedule.id);
    this.render();
    try {
      const updated = await call();
      if (updated) {
        this.schedules = this.schedules.map(s => (s.id === updated.id ? updated : s));
      }
    } catch (error: any) {
      this.actionError = `Could not ${what} ${schedule.name}: ${String(error?.message ?? error)}`;
    } finally {
      this.busy.delete(schedule.id);
    }
    await this.refresh();
  }

  private row(id: string): HTMLElement | null {
    return (
      Array.from(this.node.querySelectorAll<HTMLElement>('.jp-ext-Schedule')).find(
        row => row.dataset.schedule === id
      ) ?? null
    );
  }

  /** Draw the section from the last answer (and the last errors, if any). */
  render(): void {
    const root = this.node;
    const active = document.activeElement as HTMLElement | null;
    const focused = active && root.contains(active) ? active.dataset?.focusKey : undefined;
    root.replaceChildren();
    root.dataset.expanded = String(this.expanded);

    const header = el('div', 'jp-ext-Schedules-header');
    const toggle = el('button', 'jp-ext-Schedules-toggle');
    toggle.type = 'button';
    toggle.dataset.testid = 'jupyter-ext-schedules-toggle';
    toggle.dataset.focusKey = 'schedules:toggle';
    toggle.setAttribute('aria-expanded', String(this.expanded));
    toggle.setAttribute('aria-controls', 'jupyter-ext-schedules-body');
    toggle.title = this.expanded ? 'Hide the schedules' : 'Show the schedules';
    toggle.append(
      el('span', 'jp-ext-Schedules-caret', this.expanded ? '▾' : '▸'),
      el('span', 'jp-ext-Schedules-title', 'Schedules')
    );
    if (this.loaded) {
      toggle.append(el('span', 'jp-ext-Schedules-count', String(this.schedules.length)));
    }
    toggle.onclick = () => this.toggle();
    header.append(toggle);
    root.append(header);

    const status = el('div', 'jp-ext-JobsPanel-error jp-ext-Schedules-error');
    status.dataset.testid = 'jupyter-ext-schedules-error';
    status.setAttribute('role', 'status');
    status.setAttribute('aria-live', 'polite');
    const error = [this.actionError, this.listError].filter(Boolean).join('\n');
    status.textContent = error;
    status.hidden = !error;
    root.append(status);

    const body = el('div', 'jp-ext-Schedules-body');
    body.id = 'jupyter-ext-schedules-body';
    body.hidden = !this.expanded;
    if (!this.loaded) {
      if (!this.listError) {
        body.append(el('div', 'jp-ext-JobsPanel-empty', 'Loading schedules…'));
      }
    } else if (this.schedules.length === 0) {
      const empty = el(
        'div',
        'jp-ext-JobsPanel-empty',
        'No schedules. Schedule a notebook from its toolbar (Schedule…) or with `jupyter-ext schedule add NOTEBOOK.ipynb --cron "0 2 * * *"`.'
      );
      empty.dataset.testid = 'jupyter-ext-schedules-empty';
      body.append(empty);
    } else {
      const list = el('ul', 'jp-ext-Schedules-list');
      list.setAttribute('aria-label', 'Schedules');
      const now = this.now();
      for (const schedule of this.schedules) {
        list.append(this.renderSchedule(schedule, now));
      }
      body.append(list);
    }
    root.append(body);
    if (focused) {
      Array.from(root.querySelectorAll<HTMLElement>('[data-focus-key]'))
        .find(node => node.dataset.focusKey === focused)
        ?.focus();
    }
  }

  private renderSchedule(schedule: ISchedule, now: number): HTMLElement {
    const item = el('li', 'jp-ext-Schedule');
    item.dataset.testid = 'jupyter-ext-schedule';
    item.dataset.schedule = schedule.id;
    item.dataset.paused = String(schedule.paused);
    item.classList.toggle('jp-mod-highlight', schedule.id === this.highlight);

    const title = el('div', 'jp-ext-Schedule-title');
    const name = el('span', 'jp-ext-Schedule-name', schedule.name);
    name.title = `Schedule ${schedule.name} (${schedule.id})`;
    title.append(name);
    if (schedule.paused) {
      const paused = el('span', 'jp-ext-Badge jp-ext-Schedule-paused', 'paused');
      paused.dataset.status = 'paused';
      paused.dataset.testid = 'jupyter-ext-schedule-paused';
      title.append(paused);
    }
    item.append(title);

    const notebook = el('div', 'jp-ext-Schedule-notebook');
    notebook.append(el('code', '', schedule.notebook));
    const params = Object.entries(schedule.parameters ?? {});
    if (params.length) {
      const text = params.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ');
      notebook.append(el('span', 'jp-ext-Schedule-params', ` · ${text}`));
    }
    if (schedule.sweep && Object.keys(schedule.sweep).length) {
      const swept = Object.entries(schedule.sweep).map(([k, v]) => `${k}=${v.length} values`);
      notebook.append(el('span', 'jp-ext-Schedule-params', ` · sweep ${swept.join(', ')}`));
    }
    if (schedule.fresh) {
      const fresh = el('span', 'jp-ext-Schedule-params', ' · fresh');
      fresh.title = 'Each run ignores cached results: every step runs again';
      fresh.dataset.testid = 'jupyter-ext-schedule-fresh';
      notebook.append(fresh);
    }
    item.append(notebook);

    const when = el('div', 'jp-ext-Schedule-when');
    when.dataset.testid = 'jupyter-ext-schedule-when';
    when.append(document.createTextNode(`${whenText(schedule)} · `));
    const cron = el('code', 'jp-ext-Schedule-cron', schedule.cron);
    cron.title = 'The cron expression: minute hour day-of-month month day-of-week';
    when.append(cron);
    item.append(when);

    const next = el('div', 'jp-ext-Schedule-next');
    next.dataset.testid = 'jupyter-ext-schedule-next';
    const nextMs = toMs(schedule.next_run);
    next.textContent = nextRunText(schedule, now);
    if (!schedule.paused && nextMs !== null) {
      next.dataset.next = new Date(nextMs).toISOString();
      next.title = `${schedule.next_run_iso ?? new Date(nextMs).toISOString()} in ${schedule.timezone}; shown in this browser's time`;
    }
    item.append(next);

    item.append(this.renderRuns(schedule));

    const snapshot = el('div', 'jp-ext-Schedule-snapshot', snapshotNote(schedule, now));
    snapshot.dataset.testid = 'jupyter-ext-schedule-snapshot';
    item.append(snapshot);

    const actions = el('div', 'jp-ext-Schedule-actions');
    const busy = this.busy.has(schedule.id);
    const id = schedule.id;
    const pause = schedule.paused
      ? actionButton('Resume', 'jupyter-ext-schedule-resume', `resume:${id}`)
      : actionButton('Pause', 'jupyter-ext-schedule-pause', `pause:${id}`);
    pause.setAttribute(
      'aria-label',
      `${schedule.paused ? 'Resume' : 'Pause'} schedule ${schedule.name}`
    );
    pause.onclick = () => void (schedule.paused ? this.resume(schedule) : this.pause(schedule));
    const update = actionButton(
      'Update snapshot',
      'jupyter-ext-schedule-update-snapshot',
      `snapshot:${id}`
    );
    update.setAttribute('aria-label', `Update the notebook snapshot of schedule ${schedule.name}`);
    update.title = `Take a new snapshot of ${schedule.notebook} as it is saved now: the next runs use it`;
    update.onclick = () => void this.updateSnapshot(schedule);
    const remove = actionButton('Delete', 'jupyter-ext-schedule-delete', `delete:${id}`);
    remove.setAttribute('aria-label', `Delete schedule ${schedule.name}`);
    remove.title = 'Delete this schedule (the jobs it made stay)';
    remove.onclick = () => void this.remove(schedule);
    for (const button of [pause, update, remove]) {
      button.disabled = busy;
      actions.append(button);
    }
    item.append(actions);
    return item;
  }

  /** The last runs, newest first: a dot each, coloured by status; a run's dot opens its job. */
  private renderRuns(schedule: ISchedule): HTMLElement {
    const runs = el('div', 'jp-ext-Schedule-runs');
    runs.dataset.testid = 'jupyter-ext-schedule-runs';
    if (!schedule.runs?.length) {
      runs.append(el('span', 'jp-ext-Schedule-norun', 'No runs yet'));
      return runs;
    }
    runs.append(el('span', 'jp-ext-Schedule-label', 'Last runs'));
    const dots = el('span', 'jp-ext-Schedule-dots');
    dots.setAttribute('aria-label', 'Last runs, newest first');
    for (const run of schedule.runs) {
      const words = runText(run);
      const job = run.job;
      const dot = job ? el('button', 'jp-ext-ScheduleRun') : el('span', 'jp-ext-ScheduleRun');
      dot.dataset.testid = 'jupyter-ext-schedule-run';
      dot.dataset.status = runStatus(run);
      dot.title = words;
      if (job) {
        const button = dot as HTMLButtonElement;
        button.type = 'button';
        button.dataset.job = job;
        button.dataset.focusKey = `run:${schedule.id}:${run.due}`;
        button.setAttribute('aria-label', `Open the ${words}`);
        button.onclick = () => this.activated.emit(job);
      } else {
        dot.setAttribute('role', 'img');
        dot.setAttribute('aria-label', words);
      }
      dots.append(dot);
    }
    runs.append(dots);
    return runs;
  }
}
