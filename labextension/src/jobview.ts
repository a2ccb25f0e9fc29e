/**
 * One job in the main area: its status and actions (Cancel, Re-run), the step graph, each
 * step's progress, error and (virtualised) log, and the artifacts. It follows the job's event
 * stream from the first event, so it is live while the job runs and complete once it ended.
 * A sweep job shows its table and plot (sweepview.ts) instead of steps.
 *
 * Why this module is long: the header's actions (Cancel, Re-run, Run fresh) and the step
 * sections share the one job and its event stream; the sweep's table lives in sweepview.ts.
 */

import { Panel, Widget } from '@lumino/widgets';
import { ArtifactsView, IArtifactActions } from './artifacts';
import { JupyterExtClient } from './client';
import { duration, el, progressBar, resourcesText, statusBadge, statusText } from './dom';
import { parametersText, pyValue } from './cellsync';
import {
  applyEvent,
  explainError,
  jobLabel,
  logLines,
  ProgressTracker,
  rerunSpec,
  STATUS_EVENTS,
  stepDuration,
  stepFraction
} from './jobstate';
import { LogModel, LogView } from './logview';
import { StepGraph } from './stepgraph';
import { sweepValues, SweepView } from './sweepview';
import { IEvent, IEventStream, IJob, IRerunChoice, IStep, TERMINAL } from './tokens';

export { resourcesText }; // the job view's step line; shared with the submit dialog (dom.ts)

export interface IJobViewOptions {
  client: JupyterExtClient;
  jobId: string;
  /**
   * Open another job's view: a sweep's child, the job a cached step's result came from, the
   * sweep a child belongs to (and the one a re-run created, when there is no `onRerun`).
   */
  openJob?: (id: string) => void;
  /** Milliseconds between fetches of a running sweep (its children's statuses and metrics). */
  sweepPollMs?: number;
  /** What the artifacts' executed-notebook buttons do. */
  actions?: IArtifactActions;
  /** Milliseconds to gather events before fetching the job again. */
  refetchMs?: number;
  /**
   * Asked before a re-run is submitted, with what it would run: answers the parameters and
   * backend to run with (the user may change them), or null to submit nothing. Without it
   * a re-run submits the job's own parameters.
   */
  confirmRerun?: (
    job: IJob,
    fromStep: string | null,
    options?: { fresh?: boolean }
  ) => Promise<IRerunChoice | null>;
  /** A re-run was submitted: its notebook's open cells follow it (as a run from the toolbar). */
  onRerun?: (created: IJob, of: IJob) => void;
}

export type { IRerunChoice };

function actionButton(label: string, testid: string, warn = false): HTMLButtonElement {
  const button = el('button', `jp-Button jp-mod-styled ${warn ? 'jp-mod-warn' : 'jp-mod-reject'}`);
  button.type = 'button';
  button.textContent = label;
  button.dataset.testid = testid;
  return button;
}

/** One step: its header (status, progress, resources, error, Re-run from here) and its log. */
class StepSection extends Panel {
  readonly head = new Widget();
  readonly log: LogView;
  private readonly badgeHost = el('span', 'jp-ext-StepSection-badge');
  private readonly barHost = el('span', 'jp-ext-StepSection-progress');
  private readonly meta = el('span', 'jp-ext-StepSection-meta');
  /** "cached from job X" on a step the cache satisfied: opens that job. */
  readonly cached = el('button', 'jp-ext-CachedFrom');
  private readonly error = el('div', 'jp-ext-StepSection-error');
  private readonly diagnostics = el('ul', 'jp-ext-StepSection-diagnostics');
  readonly rerunFrom: HTMLButtonElement;

  constructor(
    readonly step: string,
    model: LogModel
  ) {
    super();
    this.addClass('jp-ext-StepSection');
    this.node.dataset.testid = 'jupyter-ext-step';
    this.node.dataset.step = step;
    const head = this.head.node;
    head.className = 'jp-ext-StepSection-head';
    const title = el('h3', 'jp-ext-StepSection-name', step);
    head.appendChild(title);
    head.appendChild(this.badgeHost);
    head.appendChild(this.barHost);
    head.appendChild(this.meta);
    this.cached.type = 'button';
    this.cached.dataset.testid = 'jupyter-ext-step-cached';
    this.cached.hidden = true;
    head.appendChild(this.cached);
    this.rerunFrom = actionButton('Re-run from here', 'jupyter-ext-rerun-from');
    this.rerunFrom.classList.replace('jp-mod-reject', 'jp-mod-minimal');
    this.rerunFrom.dataset.step = step;
    this.rerunFrom.title =
      `Run step ${step} and every step after it again, reusing the results of the steps ` +
      'before it from this job';
    head.appendChild(this.rerunFrom);
    this.error.setAttribute('role', 'alert');
    this.error.hidden = true;
    this.diagnostics.hidden = true;
    head.appendChild(this.error);
    head.appendChild(this.diagnostics);
    this.addWidget(this.head);
    this.log = new LogView(model);
    this.log.node.dataset.testid = 'jupyter-ext-step-log';
    this.log.node.dataset.step = step;
    this.log.node.setAttribute('aria-label', `Log of step ${step}`);
    this.addWidget(this.log);
  }

  showStep(
    step: IStep,
    cellsDone: number,
    took: string,
    diagnostics: readonly string[],
    canRerun: boolean
  ) {
    this.node.dataset.status = step.status;
    this.badgeHost.replaceChildren(statusBadge(step.status, statusText(step)));
    this.barHost.replaceChildren(progressBar(step, stepFraction(step, cellsDone), cellsDone));
    const parts = [];
    const reused = step.reused_from;
    const cachedFrom = step.cache?.hit ? step.cache.from : null;
    this.cached.hidden = !cachedFrom;
    if (cachedFrom) {
      this.cached.textContent = `cached from job ${cachedFrom.job}`;
      this.cached.dataset.job = cachedFrom.job;
      this.cached.title =
        `Not run again: its inputs did not change since job ${cachedFrom.job} ran step ` +
        `${cachedFrom.step} (attempt ${cachedFrom.attempt}), whose outputs these are. ` +
        'Click to open that job; Run fresh runs every step again.';
    } else {
      delete this.cached.dataset.job;
    }
    if (reused) {
      parts.push(`reused from job ${reused.job}`);
    } else if (cachedFrom) {
      // said by the button beside
    } else if (step.cells.length && step.status !== 'queued') {
      parts.push(`${Math.min(cellsDone, step.cells.length)}/${step.cells.length} cells`);
    }
    if (took) {
      parts.push(took);
    }
    if (step.attempt > 1) {
      parts.push(`attempt ${step.attempt} of ${step.retries + 1}`);
    }
    if (step.after.length) {
      parts.push(`after ${step.after.join(', ')}`);
    }
    const resources = resourcesText(step);
    if (resources) {
      parts.push(resources);
    }
    this.meta.textContent = parts.join(' · ');
    this.log.emptyText = reused
      ? `Not run again: this re-run reuses its result from job ${reused.job}.`
      : cachedFrom
        ? `Not run again: its result is the cached one of job ${cachedFrom.job}.`
        : 'No output yet.';
    const explained = explainError(step.error);
    this.error.textContent = explained;
    this.error.hidden = !explained;
    this.diagnostics.replaceChildren(
      ...diagnostics.map(text => el('li', 'jp-ext-StepSection-diagnostic', text))
    );
    this.diagnostics.hidden = diagnostics.length === 0 || TERMINAL.has(step.status);
    this.rerunFrom.hidden = !canRerun;
  }
}

/** The job view's content: everything under the main area widget's toolbar. */
export class JobView extends Panel {
  private job: IJob | null = null;
  private readonly tracker = new ProgressTracker();
  private readonly logs = new Map<string, LogModel>();
  private readonly diagnostics = new Map<string, string[]>();
  private readonly sections = new Map<string, StepSection>();
  private stream: IEventStream | null = null;
  private clock: ReturnType<typeof setInterval> | null = null;
  private renderTimer: ReturnType<typeof setTimeout> | null = null;
  private refetchTimer: ReturnType<typeof setTimeout> | null = null;
  private artifactsTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly refetchMs: number;
  /** The last seq the first fetch already covered: its replay needs no fetch again. */
  private fetchedSeq = 0;

  readonly header = new Widget();
  /** A sweep job's table and plot (hidden for other jobs). */
  readonly sweepView: SweepView;
  private sweepTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly sweepPollMs: number;
  private readonly stepsParts: Widget[] = [];
  readonly graph = new StepGraph();
  readonly steps = new Panel();
  readonly artifacts: ArtifactsView;
  private readonly title_ = el('h2', 'jp-ext-JobView-title');
  private readonly badgeHost = el('span', 'jp-ext-JobView-badge');
  private readonly meta = el('div', 'jp-ext-JobView-meta');
  private readonly params = el('div', 'jp-ext-JobView-parameters');
  private readonly error = el('div', 'jp-ext-JobView-error');
  private readonly message = el('div', 'jp-ext-JobView-message');
  /** On a sweep's child: the sweep it is one run of (opens its view). */
  private readonly parentLink = el('button', 'jp-ext-JobView-parent');
  readonly cancelButton = actionButton('Cancel', 'jupyter-ext-cancel', true);
  readonly rerunButton = actionButton('Re-run', 'jupyter-ext-rerun');
  readonly freshButton = actionButton('Run fresh', 'jupyter-ext-run-fresh');
  /** Settles once the job was fetched and its event stream opened (or that failed). */
  readonly ready: Promise<void>;

  constructor(private readonly options: IJobViewOptions) {
    super();
    this.refetchMs = options.refetchMs ?? 400;
    this.sweepPollMs = options.sweepPollMs ?? 2000;
    this.addClass('jp-ext-JobView');
    this.node.dataset.testid = 'jupyter-ext-job-view';
    this.node.dataset.job = options.jobId;
    this.title.label = `Job ${options.jobId}`;
    this.buildHeader();
    this.addWidget(this.header);
    this.sweepView = new SweepView(id => this.options.openJob?.(id));
    this.sweepView.hide();
    this.addWidget(this.sweepView);
    const graphHeading = new Widget({ node: el('h3', 'jp-ext-JobView-heading', 'Steps') });
    this.addWidget(graphHeading);
    this.addWidget(this.graph);
    this.steps.addClass('jp-ext-JobView-steps');
    this.addWidget(this.steps);
    const artifactsHeading = new Widget({ node: el('h3', 'jp-ext-JobView-heading', 'Artifacts') });
    this.addWidget(artifactsHeading);
    this.artifacts = new ArtifactsView(options.client, options.jobId, options.actions);
    this.addWidget(this.artifacts);
    // What a sweep job (no steps of its own) does not show.
    this.stepsParts.push(graphHeading, this.graph, this.steps, artifactsHeading, this.artifacts);
    this.graph.stepSelected.connect((_, step) => this.revealStep(step));
    this.ready = this.start();
  }

  /** The id of the job shown. */
  get jobId(): string {
    return this.options.jobId;
  }

  /** The job as shown now. */
  get shown(): IJob | null {
    return this.job;
  }

  /** The log of one step (created on its first line). */
  logOf(step: string): LogModel {
    let model = this.logs.get(step);
    if (!model) {
      model = new LogModel();
      this.logs.set(step, model);
    }
    return model;
  }

  /** Scroll a step's section into view and put the keyboard in its log. */
  revealStep(step: string): void {
    const section = this.sections.get(step);
    if (section) {
      section.node.scrollIntoView?.({ block: 'nearest', behavior: 'smooth' });
      section.log.node.focus();
    }
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.stream?.dispose();
    for (const timer of [
      this.renderTimer,
      this.refetchTimer,
      this.artifactsTimer,
      this.sweepTimer
    ]) {
      if (timer !== null) {
        clearTimeout(timer);
      }
    }
    this.stopClock();
    super.dispose();
  }

  private async start(): Promise<void> {
    const { client, jobId } = this.options;
    try {
      const job = await client.getJob(jobId);
      this.fetchedSeq = job.last_seq;
      this.setJob(job);
    } catch (error: any) {
      this.say(`Could not load job ${jobId}: ${String(error?.message ?? error)}`, true);
      return;
    }
    void this.artifacts.refresh();
    if (!this.isDisposed) {
      this.stream = client.streamEvents(jobId, 0, event => this.onEvent(event));
    }
  }

  private buildHeader(): void {
    const node = this.header.node;
    node.className = 'jp-ext-JobView-header';
    const line = el('div', 'jp-ext-JobView-titleline');
    line.appendChild(this.title_);
    line.appendChild(this.badgeHost);
    const actions = el('div', 'jp-ext-JobView-actions');
    this.cancelButton.title = 'Stop this job: running steps are stopped, queued ones never start';
    this.cancelButton.onclick = () => void this.cancel();
    this.rerunButton.title =
      'Run the same notebook again: shows its parameters and backend (this job’s) to check or change first';
    this.rerunButton.onclick = () => void this.rerun();
    this.freshButton.title =
      'Run the notebook again ignoring cached results: every step runs again (its new result is cached)';
    this.freshButton.onclick = () => void this.rerun(undefined, true);
    actions.appendChild(this.cancelButton);
    actions.appendChild(this.rerunButton);
    actions.appendChild(this.freshButton);
    line.appendChild(actions);
    node.appendChild(line);
    node.appendChild(this.meta);
    this.parentLink.type = 'button';
    this.parentLink.dataset.testid = 'jupyter-ext-job-parent';
    this.parentLink.hidden = true;
    this.parentLink.onclick = () => {
      if (this.job?.parent) {
        this.options.openJob?.(this.job.parent);
      }
    };
    node.appendChild(this.parentLink);
    this.params.dataset.testid = 'jupyter-ext-job-parameters';
    node.appendChild(this.params);
    this.error.setAttribute('role', 'alert');
    this.error.hidden = true;
    node.appendChild(this.error);
    this.message.setAttribute('role', 'status');
    this.message.setAttribute('aria-live', 'polite');
    this.message.hidden = true;
    node.appendChild(this.message);
  }

  /** Say something under the header: what became of a re-run of this job, say. */
  notify(text: string, isError = false): void {
    this.say(text, isError);
  }

  /** Say something under the header (an action's outcome); errors stay until the next one. */
  private say(text: string, isError = false): void {
    this.message.textContent = text;
    this.message.hidden = !text;
    this.message.classList.toggle('jp-mod-error', isError);
  }

  private setJob(job: IJob): void {
    if (this.isDisposed) {
      return;
    }
    this.job = job;
    this.render();
  }

  /** One event from the stream: the log, the progress, and (soon) the picture. */
  onEvent(event: IEvent): void {
    this.tracker.add(event);
    if (event.step) {
      const started = this.tracker.stepTimes(event.step)?.start;
      for (const { text, kind } of logLines(event, started)) {
        this.logOf(event.step).append(text, kind);
      }
      if (event.type === 'log' && event.reason) {
        const list = this.diagnostics.get(event.step) ?? [];
        list.push(explainError({ message: String(event.text ?? '').trim() }, event.reason));
        this.diagnostics.set(event.step, list.slice(-5));
      }
    }
    // The stream replays from the first event. Those the first fetch already covered still
    // go through applyEvent (the server stores a step's end before its row says so) but need
    // no fetch of the job or the artifacts again.
    const fresh = event.seq > this.fetchedSeq;
    if (this.job && STATUS_EVENTS.has(event.type)) {
      this.job = applyEvent(this.job, event);
      if (fresh) {
        this.refetchSoon();
      }
    }
    if (fresh && ['artifact', 'step.end', 'job.end'].includes(event.type)) {
      this.refreshArtifactsSoon();
    }
    if (STATUS_EVENTS.has(event.type) || event.type === 'cell.end' || event.type === 'log') {
      this.renderSoon();
    }
  }

  private renderSoon(): void {
    if (this.renderTimer === null) {
      this.renderTimer = setTimeout(() => {
        this.renderTimer = null;
        this.render();
      }, 50);
    }
  }

  private refetchSoon(): void {
    if (this.refetchTimer !== null) {
      clearTimeout(this.refetchTimer);
    }
    this.refetchTimer = setTimeout(async () => {
      this.refetchTimer = null;
      try {
        this.setJob(await this.options.client.getJob(this.options.jobId));
      } catch {
        // The stream keeps the picture right meanwhile; the next status event tries again.
      }
    }, this.refetchMs);
  }

  private refreshArtifactsSoon(): void {
    if (this.artifactsTimer === null) {
      this.artifactsTimer = setTimeout(() => {
        this.artifactsTimer = null;
        void this.artifacts.refresh();
      }, this.refetchMs);
    }
  }

  private startClock(): void {
    if (this.clock === null) {
      this.clock = setInterval(() => this.render(), 1000);
    }
  }

  private stopClock(): void {
    if (this.clock !== null) {
      clearInterval(this.clock);
      this.clock = null;
    }
  }

  /** Whether this job can be submitted again (a `%%remote` cell job cannot: no notebook). */
  private get rerunnable(): boolean {
    return !!this.job && this.job.notebook.endsWith('.ipynb');
  }

  /** Draw the job as it is now. */
  render(): void {
    const job = this.job;
    if (!job || this.isDisposed) {
      return;
    }
    const terminal = TERMINAL.has(job.status);
    if (terminal) {
      this.stopClock();
    } else {
      this.startClock();
    }
    this.node.dataset.status = job.status;
    this.title.label = `Job: ${jobLabel(job)}`;
    this.title.caption =
      `${job.notebook} (job ${job.id}): ${job.status.replace('_', ' ')}` +
      (Object.keys(job.parameters ?? {}).length
        ? `\nParameters: ${parametersText(job.parameters)}`
        : '');
    this.title_.textContent = jobLabel(job);
    const used = parametersText(job.parameters);
    this.params.textContent = used
      ? `Parameters: ${used}`
      : 'Parameters: the notebook’s own values (none changed)';
    this.badgeHost.replaceChildren(statusBadge(job.status, statusText(job)));
    const took = duration(job);
    this.meta.textContent = [
      job.notebook,
      `backend ${job.backend}`,
      `job ${job.id}`,
      `created ${new Date(job.created).toLocaleString()}`,
      took ? `ran ${took}` : ''
    ]
      .filter(Boolean)
      .join(' · ');
    // In sentences: "Step train failed. The step ran out of memory: .... The step needed ..."
    const failedStep = job.error?.step ? `Step ${job.error.step} failed. ` : '';
    const explained = explainError(job.error);
    this.error.textContent = explained ? `${failedStep}${explained}` : '';
    this.error.hidden = !explained || job.status === 'cancelled';
    this.cancelButton.hidden = terminal;
    this.rerunButton.hidden = !this.rerunnable;
    // Run fresh: only where a cache could answer (cached steps; a sweep's children cache).
    this.freshButton.hidden =
      !terminal || !this.rerunnable || !(job.sweep || job.steps.some(s => s.cache));
    this.renderFamily(job, terminal);
    if (job.sweep) {
      return; // no steps of its own: its children have them
    }
    this.graph.setSteps(job.steps);
    for (const step of job.steps) {
      let section = this.sections.get(step.name);
      if (!section) {
        section = new StepSection(step.name, this.logOf(step.name));
        const name = step.name;
        section.rerunFrom.onclick = () => void this.rerun(name);
        const cached = section.cached;
        cached.onclick = () => {
          if (cached.dataset.job) {
            this.options.openJob?.(cached.dataset.job);
          }
        };
        this.sections.set(step.name, section);
        this.steps.addWidget(section);
      }
      section.showStep(
        step,
        this.tracker.cellsDone(step.name, step.cells),
        stepDuration(step, step.reused_from ? null : this.tracker),
        this.diagnostics.get(step.name) ?? [],
        terminal && this.rerunnable && job.steps.length > 1
      );
    }
  }

  /**
   * A sweep job: its table and plot instead of steps (fetched again while it runs, since its
   * children's progress is not on its own stream); a sweep's child: the sweep it belongs to.
   */
  private renderFamily(job: IJob, terminal: boolean): void {
    const sweep = job.sweep ?? null;
    this.node.dataset.kind = sweep ? 'sweep' : 'job';
    this.sweepView.setHidden(!sweep);
    for (const part of this.stepsParts) {
      part.setHidden(!!sweep);
    }
    this.parentLink.hidden = !job.parent;
    if (job.parent) {
      this.parentLink.textContent = `One run of sweep ${job.parent}: open the sweep`;
      this.parentLink.title = `This job is one combination of sweep ${job.parent}'s values`;
    }
    if (!sweep) {
      return;
    }
    const values = Object.entries(sweepValues(sweep))
      .map(([name, list]) => `${name} = ${list.map(pyValue).join(', ')}`)
      .join('; ');
    const base = parametersText(job.parameters);
    this.params.textContent = `Swept: ${values}` + (base ? ` · Parameters: ${base}` : '');
    this.sweepView.showSweep(sweep);
    if (!terminal && this.sweepTimer === null && !this.isDisposed) {
      this.sweepTimer = setTimeout(() => {
        this.sweepTimer = null;
        this.refetchSoon();
      }, this.sweepPollMs);
    }
  }

  private async cancel(): Promise<void> {
    const job = this.job;
    if (!job) {
      return;
    }
    this.cancelButton.disabled = true;
    this.say('Cancelling…');
    try {
      this.setJob(await this.options.client.cancel(job.id));
      this.say('');
    } catch (error: any) {
      this.say(`Could not cancel: ${String(error?.message ?? error)}`, true);
    } finally {
      this.cancelButton.disabled = false;
    }
  }

  /**
   * Submit the job again: all of it, or from one step on (reusing this job's earlier steps);
   * `fresh`: ignoring cached results. A sweep is submitted again as a sweep of the same values.
   */
  async rerun(fromStep?: string, fresh = false): Promise<IJob | null> {
    const job = this.job;
    if (!job) {
      return null;
    }
    const buttons = [
      this.rerunButton,
      this.freshButton,
      ...[...this.sections.values()].map(s => s.rerunFrom)
    ];
    buttons.forEach(b => (b.disabled = true));
    try {
      let choice: IRerunChoice | null = { parameters: job.parameters, backend: job.backend };
      if (fresh) {
        choice.fresh = true;
      }
      if (job.sweep) {
        choice.sweep = sweepValues(job.sweep);
        choice.sweep_mode = job.sweep.mode;
        choice.sweep_parallel = job.sweep.parallel;
      }
      if (this.options.confirmRerun) {
        choice = await this.options.confirmRerun(job, fromStep ?? null, { fresh });
        if (!choice) {
          return null; // the user thought better of it: nothing submitted
        }
      }
      const created = await this.options.client.submit(rerunSpec(job, choice, fromStep ?? null));
      this.say(`Started job ${created.id}` + (fromStep ? ` from step ${fromStep}.` : '.'), false);
      if (this.options.onRerun) {
        this.options.onRerun(created, job);
      } else {
        this.options.openJob?.(created.id);
      }
      return created;
    } catch (error: any) {
      this.say(`Could not re-run: ${String(error?.message ?? error)}`, true);
      return null;
    } finally {
      buttons.forEach(b => (b.disabled = false));
    }
  }
}
