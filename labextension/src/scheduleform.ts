/**
 * The body of the "Schedule notebook" dialog: when (a preset or any cron expression, with its
 * words), in which time zone (the browser's by default), the name, and, as the Run dialog has
 * them, the backend and the notebook's parameters. What the server refuses is shown next to
 * the field it names. (The dialog around it and the command are in scheduledialog.ts.)
 */

import { PathExt } from '@jupyterlab/coreutils';
import { Panel, Widget } from '@lumino/widgets';
import { ApiError, JupyterExtClient } from './client';
import {
  browserTimeZone,
  CRON_PRESETS,
  cronProblem,
  describeCron,
  isTimeZone,
  timeZones
} from './crontext';
import { el, isRecheck, recheckDialog } from './dom';
import { SubmitDialogBody } from './submitdialog';
import type { ISchedule, IScheduleSpec } from './tokens';

/** The fields of the dialog the server may name in an error (`parameters.*` are the Run part's). */
const FIELDS = ['name', 'cron', 'timezone'] as const;
type Field = (typeof FIELDS)[number];

/** What the dialog starts from (tests and a later "edit" may give other values). */
export interface IScheduleInitial {
  name?: string;
  cron?: string;
  timezone?: string;
}

/** The schedule fields (name, when, time zone) above the Run dialog's backend and parameters. */
class ScheduleFields extends Widget {
  readonly inputs: { [key in Field]: HTMLInputElement };
  readonly errors = new Map<string, HTMLElement>();
  readonly preset: HTMLSelectElement;
  readonly words: HTMLElement;
  readonly general: HTMLElement;
  readonly progress: HTMLElement;

  constructor(notebook: string, initial: IScheduleInitial) {
    super();
    this.addClass('jp-ext-ScheduleDialog-fields');
    const node = this.node;
    node.style.setProperty('--jp-ext-label-width', 'clamp(96px, 11ch, 240px)');
    const note = el(
      'div',
      'jp-ext-ScheduleDialog-note',
      `Runs use a snapshot of ${notebook} taken when you click Schedule; editing the notebook later does not change them until you update the snapshot (Jobs panel, Schedules).`
    );
    note.dataset.testid = 'jupyter-ext-schedule-dialog-note';
    this.general = el('div', 'jp-ext-SubmitDialog-error');
    this.general.dataset.testid = 'jupyter-ext-schedule-error';
    this.general.dataset.field = '';
    this.general.hidden = true;
    this.progress = el('div', 'jp-ext-SubmitDialog-loading', 'Taking the snapshot…');
    this.progress.hidden = true;
    node.append(note, this.general);

    const input = (field: Field, value: string): HTMLInputElement => {
      const box = el('input', 'jp-mod-styled');
      box.dataset.field = field;
      box.dataset.testid = `jupyter-ext-schedule-${field}`;
      box.value = value;
      box.spellcheck = false;
      return box;
    };
    const row = (label: string, field: string, ...content: HTMLElement[]): HTMLElement => {
      // A label around one control; a div around several (each says its name).
      const line = el(
        content[0] instanceof HTMLInputElement ? 'label' : 'div',
        'jp-ext-SubmitDialog-row'
      );
      line.append(el('span', 'jp-ext-SubmitDialog-label', label), ...content);
      const error = el('div', 'jp-ext-FieldError');
      error.dataset.testid = 'jupyter-ext-schedule-error';
      error.dataset.field = field;
      error.hidden = true;
      this.errors.set(field, error);
      line.append(error);
      return line;
    };

    const stem = PathExt.basename(notebook, '.ipynb');
    const name = input('name', initial.name ?? stem);
    name.placeholder = stem;
    name.title = 'What the panel and the jobs it makes are called';

    this.preset = el('select', 'jp-mod-styled');
    this.preset.dataset.testid = 'jupyter-ext-schedule-preset';
    for (const preset of CRON_PRESETS) {
      const option = el('option', '', preset.label);
      option.value = preset.cron;
      this.preset.append(option);
    }
    const custom = el('option', '', 'Custom (cron expression)');
    custom.value = 'custom';
    this.preset.append(custom);

    const cron = input('cron', initial.cron ?? '0 2 * * *');
    cron.placeholder = 'minute hour day month weekday, e.g. 0 2 * * *';
    cron.title =
      'A cron expression: minute hour day-of-month month day-of-week (e.g. 30 9 * * 1-5)';
    this.words = el('div', 'jp-ext-SubmitDialog-help jp-ext-ScheduleDialog-words');
    this.words.dataset.testid = 'jupyter-ext-schedule-words';

    const zone = input('timezone', initial.timezone ?? browserTimeZone());
    zone.title =
      'The time zone the expression is read in (an IANA name such as Europe/Berlin, or UTC)';
    const zones = timeZones();
    if (zones.length) {
      const list = el('datalist', '');
      list.id = `jupyter-ext-timezones-${Math.random().toString(36).slice(2)}`;
      for (const z of zones) {
        const option = el('option', '');
        option.value = z;
        list.append(option);
      }
      zone.setAttribute('list', list.id);
      node.append(list);
    }

    this.inputs = { name, cron, timezone: zone };
    // A preset and the expression it stands for side by side: picking one fills the other.
    const when = el('div', 'jp-ext-ScheduleDialog-when');
    this.preset.setAttribute('aria-label', 'Repeat');
    cron.setAttribute('aria-label', 'Cron expression');
    when.append(this.preset, cron);
    const whenRow = row('When', 'cron', when);
    whenRow.append(this.words);
    node.append(
      row('Name', 'name', name),
      whenRow,
      row('Time zone', 'timezone', zone),
      this.progress
    );
    this.syncPreset();
  }

  /** The preset matching the expression typed (Custom when none does); the words under it. */
  syncPreset(): void {
    const cron = this.inputs.cron.value.trim().replace(/\s+/g, ' ');
    this.preset.value = CRON_PRESETS.some(p => p.cron === cron) ? cron : 'custom';
    const words = describeCron(cron);
    this.words.textContent = words ? `Runs ${words}.` : '';
    this.words.hidden = !words;
  }
}

/** The dialog body: the schedule fields, then the Run dialog (backend, steps, parameters). */
export class ScheduleDialogBody extends Panel {
  readonly run: SubmitDialogBody;
  private readonly fields: ScheduleFields;
  /** What the server refused, per field, until that field is edited. */
  private readonly serverErrors = new Map<string, string>();

  constructor(
    client: JupyterExtClient,
    readonly notebook: string,
    initial: IScheduleInitial = {}
  ) {
    super();
    this.addClass('jp-ext-ScheduleDialog');
    this.node.dataset.testid = 'jupyter-ext-schedule-dialog';
    this.fields = new ScheduleFields(notebook, initial);
    this.run = new SubmitDialogBody(client, notebook);
    this.addWidget(this.fields);
    this.addWidget(this.run);
    this.fields.node.addEventListener('input', this);
    this.fields.node.addEventListener('change', this);
    this.check();
  }

  /** Resolves once the notebook's plan (steps, parameters) is shown. */
  get ready(): Promise<void> {
    return this.run.ready;
  }

  handleEvent(event: Event): void {
    if (isRecheck(event)) {
      return;
    }
    const target = event.target as HTMLElement;
    if (target === this.fields.preset) {
      if (this.fields.preset.value !== 'custom') {
        this.fields.inputs.cron.value = this.fields.preset.value;
      } else {
        this.fields.inputs.cron.focus();
      }
      this.serverErrors.delete('cron');
    }
    const field = target.dataset?.field;
    if (field) {
      this.serverErrors.delete(field);
    }
    this.fields.syncPreset();
    this.check();
    recheckDialog(this.node);
  }

  protected onAfterAttach(msg: any): void {
    super.onAfterAttach(msg);
    recheckDialog(this.node);
  }

  /** The problems the fields have now (local checks, then what the server said), by field. */
  private problems(): Map<Field, string> {
    const found = new Map<Field, string>();
    const { cron, timezone } = this.fields.inputs;
    const cronIssue = cronProblem(cron.value);
    if (cronIssue) {
      found.set('cron', cronIssue);
    }
    const zone = timezone.value.trim();
    if (!isTimeZone(zone)) {
      found.set(
        'timezone',
        zone
          ? `timezone: ${zone} is not a time zone; use a name such as Europe/Berlin, America/New_York or UTC`
          : 'timezone: give a time zone, e.g. Europe/Berlin or UTC'
      );
    }
    for (const field of FIELDS) {
      const said = this.serverErrors.get(field);
      if (said && !found.has(field)) {
        found.set(field, said);
      }
    }
    return found;
  }

  /** Show each field's problem under it; true when there is none. */
  private check(): boolean {
    const found = this.problems();
    for (const field of FIELDS) {
      const shown = found.get(field);
      const node = this.fields.errors.get(field)!;
      node.textContent = shown ?? '';
      node.hidden = !shown;
      this.fields.inputs[field].classList.toggle('jp-mod-error', !!shown);
      this.fields.inputs[field].setAttribute('aria-invalid', String(!!shown));
    }
    const general = this.serverErrors.get('');
    this.fields.general.textContent = general ?? '';
    this.fields.general.hidden = !general;
    return found.size === 0;
  }

  /**
   * Show what the server refused next to the field it names (`cron`, `timezone`, `name`, a
   * parameter), or above the fields when it names none of them.
   */
  showServerError(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    const field = err instanceof ApiError ? (err.field ?? '') : '';
    this.serverErrors.clear();
    const param = field.startsWith('parameters.') ? field.slice('parameters.'.length) : null;
    const paramError = param ? this.paramNode('jupyter-ext-submit-error', param) : null;
    if ((FIELDS as readonly string[]).includes(field)) {
      this.serverErrors.set(field, message);
    } else if (paramError) {
      paramError.textContent = message;
      paramError.hidden = false;
      this.paramNode('jupyter-ext-param', param!)?.classList.add('jp-mod-error');
    } else {
      this.serverErrors.set('', message);
    }
    this.check();
    recheckDialog(this.node);
  }

  private paramNode(testid: string, param: string): HTMLElement | null {
    return (
      Array.from(this.run.node.querySelectorAll<HTMLElement>(`[data-testid="${testid}"]`)).find(
        node => node.dataset.param === param
      ) ?? null
    );
  }

  /** While the request is under way: say so (the dialog's Schedule button is off meanwhile). */
  busy(on: boolean): void {
    this.fields.progress.hidden = !on;
  }

  /** The `POST schedules` body the dialog stands for; throws what is wrong. */
  getValue(): IScheduleSpec {
    const problem = this.problems().values().next();
    if (!problem.done) {
      throw new Error(problem.value);
    }
    // The Run part's answer; its "Ignore cached results" makes every run of the schedule run
    // every step again (a nightly job whose steps read new data).
    const choice = this.run.getValue();
    const { name, cron, timezone } = this.fields.inputs;
    const spec: IScheduleSpec = {
      notebook: this.notebook,
      cron: cron.value.trim().replace(/\s+/g, ' '),
      timezone: timezone.value.trim(),
      name: name.value.trim() || PathExt.basename(this.notebook, '.ipynb'),
      backend: choice.backend,
      parameters: choice.parameters
    };
    if (choice.fresh) {
      spec.fresh = true;
    }
    if (choice.sweep && Object.keys(choice.sweep).length) {
      spec.sweep = choice.sweep;
      if (choice.sweep_mode) {
        spec.sweep_mode = choice.sweep_mode;
      }
      if (choice.sweep_parallel) {
        spec.sweep_parallel = choice.sweep_parallel;
      }
    }
    return spec;
  }
}

/**
 * Make the schedule the dialog stands for: `POST schedules` with its value. Answers the
 * schedule, or null after showing in the body why not (the dialog then stays open).
 */
export async function submitSchedule(
  client: JupyterExtClient,
  body: ScheduleDialogBody
): Promise<ISchedule | null> {
  let spec: IScheduleSpec;
  try {
    spec = body.getValue();
  } catch (err) {
    body.showServerError(err);
    return null;
  }
  body.busy(true);
  try {
    return await client.createSchedule(spec);
  } catch (err) {
    body.showServerError(err);
    return null;
  } finally {
    body.busy(false);
  }
}
