/**
 * The step editor: a dialog to name a step and pick what it runs after and what it needs
 * (GPUs, memory, CPU, image, timeout, retries). The server checks the form as it is typed
 * (`POST tags/check` with an edit, 300 ms after the last keystroke) and says which tags saving
 * writes; Save stays disabled while the form is wrong, being checked, or cannot be checked.
 */

import { Widget } from '@lumino/widgets';
import { isRecheck, recheckDialog } from './dom';
import {
  checkFailedText,
  FORM_FIELDS,
  FormErrors,
  FormField,
  formFor,
  ICheckCell,
  INotebookSteps,
  IStepForm,
  TagChecker
} from './tagcheck';

const LABELS: Record<FormField, [string, string]> = {
  name: ['Step name', 'e.g. train (letters, digits, _ - .)'],
  after: ['Runs after', 'steps, comma-separated, e.g. load, clean'],
  gpu: ['GPUs', 'e.g. 1'],
  memory: ['Memory', 'e.g. 16Gi'],
  cpu: ['CPU', 'e.g. 4 or 500m'],
  image: ['Image', 'e.g. python:3.11-slim'],
  timeout: ['Timeout', 'e.g. 2h, 90m'],
  retries: ['Retries', 'e.g. 2']
};

/** The dialog body: one input per field, each with its inline error. */
export class StepEditorBody extends Widget {
  private readonly inputs = new Map<FormField, HTMLInputElement>();
  private readonly errors = new Map<FormField, HTMLElement>();
  private touched = false;
  /** Holds `jp-mod-error` while the form cannot be saved (the dialog disables Save on it). */
  private readonly blocker = document.createElement('span');
  /** While the server checks the form, or when it cannot: says so. */
  private readonly status = document.createElement('div');
  /** Asks the server about the form as typed (debounced, stale answers dropped). */
  readonly checker: TagChecker<IStepForm, INotebookSteps>;

  /**
   * `nb`: the server's answer about the notebook; `check(form)`: the server's answer with
   * `form` as an edit of cell `index`.
   */
  constructor(
    nb: INotebookSteps,
    index: number,
    check: (form: IStepForm) => Promise<INotebookSteps>,
    delayMs = 300
  ) {
    super();
    this.addClass('jp-ext-StepEditor');
    this.node.dataset.testid = 'jupyter-ext-step-editor';
    this.checker = new TagChecker(check, delayMs);
    this.checker.changed.connect(() => {
      this.validate();
      recheckDialog(this.node);
    });
    const initial = formFor(nb, index);
    const current = nb.cells[index]?.opens ? nb.cells[index].step : null;
    const known = nb.steps
      .map(s => s.name)
      .filter(n => n !== current && !(nb.single && n === 'main'));
    const list = document.createElement('datalist');
    list.id = `jp-ext-steps-${Math.random().toString(36).slice(2)}`;
    for (const name of known) {
      const option = document.createElement('option');
      option.value = name;
      list.append(option);
    }
    this.blocker.hidden = true;
    this.status.className = 'jp-ext-StepEditor-check';
    this.status.dataset.testid = 'jupyter-ext-step-editor-check';
    this.status.setAttribute('role', 'status');
    this.status.hidden = true;
    this.node.append(this.blocker, list);
    for (const field of FORM_FIELDS) {
      const [label, hint] = LABELS[field];
      const row = document.createElement('label');
      row.className = 'jp-ext-StepEditor-row';
      const text = document.createElement('span');
      text.textContent = label;
      const input = document.createElement('input');
      input.className = 'jp-mod-styled';
      input.name = field;
      input.dataset.field = field;
      input.placeholder = hint;
      input.value = initial[field];
      input.spellcheck = false;
      if (field === 'after') {
        input.setAttribute('list', list.id);
      }
      if (field === 'gpu' || field === 'retries') {
        input.inputMode = 'numeric';
      }
      const error = document.createElement('div');
      error.className = 'jp-ext-FieldError';
      error.dataset.testid = 'jupyter-ext-field-error';
      error.dataset.field = field;
      error.hidden = true;
      row.append(text, input, error);
      this.node.append(row);
      this.inputs.set(field, input);
      this.errors.set(field, error);
    }
    this.node.append(this.status);
    this.node.addEventListener('input', this);
  }

  dispose(): void {
    this.checker.dispose();
    super.dispose();
  }

  /** The form as typed. */
  getValue(): IStepForm {
    const form = {} as IStepForm;
    for (const field of FORM_FIELDS) {
      form[field] = this.inputs.get(field)!.value;
    }
    return form;
  }

  /**
   * Show each field's error as the server's last answer about the form says; the dialog's Save
   * button is disabled while there is one, and while the answer is awaited or missing.
   */
  validate(): FormErrors {
    const { state, result, error } = this.checker;
    // While a new answer is awaited the last one stays shown (no flicker as one types).
    const errors: FormErrors = state === 'failed' ? {} : (result?.edit?.errors ?? {});
    const untouchedEmptyName = !this.inputs.get('name')!.value.trim() && !this.touched;
    for (const field of FORM_FIELDS) {
      const message = errors[field];
      const input = this.inputs.get(field)!;
      const node = this.errors.get(field)!;
      // An empty name on a fresh form disables Save without scolding the user yet: no error
      // text and no red field until something was typed.
      const shown = message && !(field === 'name' && untouchedEmptyName) ? message : '';
      const appeared = !!shown && node.hidden;
      node.textContent = shown;
      node.hidden = !shown;
      input.classList.toggle('jp-mod-error', !!shown);
      input.setAttribute('aria-invalid', shown ? 'true' : 'false');
      if (appeared && document.activeElement === input) {
        node.scrollIntoView?.({ block: 'nearest' }); // the error of the field being typed in
      }
    }
    this.status.dataset.state = state;
    this.status.textContent =
      state === 'waiting' ? 'Checking the step…' : state === 'failed' ? checkFailedText(error) : '';
    this.status.hidden = state === 'ready';
    const blocked = state !== 'ready' || !result?.edit || Object.keys(errors).length > 0;
    this.blocker.className = blocked ? 'jp-mod-error' : '';
    return errors;
  }

  handleEvent(event: Event): void {
    if (event.type !== 'input' || isRecheck(event)) {
      return;
    }
    this.touched = true;
    this.checker.request(this.getValue());
    this.validate();
    recheckDialog(this.node);
  }

  protected onAfterAttach(): void {
    this.checker.request(this.getValue());
    this.validate();
    recheckDialog(this.node);
    this.inputs.get('name')!.focus();
  }
}

/** Where the editor reads and writes tags: the notebook's cells in order. */
export interface ITagStore {
  cells(): ICheckCell[];
  write(index: number, tags: string[]): void;
}
