/**
 * The step editor: a dialog to name a step and pick what it runs after and what it needs
 * (GPUs, memory, CPU, image, timeout, retries). It refuses invalid values in the form, with
 * the server's rules (tagmodel.ts), and writes the cell tags of DESIGN.md's grammar.
 */

import { Widget } from '@lumino/widgets';
import { isRecheck, recheckDialog } from './dom';
import {
  FORM_FIELDS,
  FormErrors,
  FormField,
  formFor,
  INotebookCell,
  INotebookSteps,
  IStepForm,
  validateForm
} from './tagmodel';

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

  constructor(
    private readonly nb: INotebookSteps,
    private readonly index: number
  ) {
    super();
    this.addClass('jp-ext-StepEditor');
    this.node.dataset.testid = 'jupyter-ext-step-editor';
    const initial = formFor(nb, index);
    const known = [...nb.steps.keys()].filter(n => !(nb.single && n === 'main'));
    const list = document.createElement('datalist');
    list.id = `jp-ext-steps-${Math.random().toString(36).slice(2)}`;
    for (const name of known) {
      const option = document.createElement('option');
      option.value = name;
      list.append(option);
    }
    this.blocker.hidden = true;
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
    this.node.addEventListener('input', this);
  }

  /** The form as typed. */
  getValue(): IStepForm {
    const form = {} as IStepForm;
    for (const field of FORM_FIELDS) {
      form[field] = this.inputs.get(field)!.value;
    }
    return form;
  }

  /** Show each field's error; the dialog's Save button is disabled while there is one. */
  validate(): FormErrors {
    const errors = validateForm(this.nb, this.index, this.getValue());
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
    this.blocker.className = Object.keys(errors).length ? 'jp-mod-error' : '';
    return errors;
  }

  handleEvent(event: Event): void {
    if (event.type !== 'input' || isRecheck(event)) {
      return;
    }
    this.touched = true;
    this.validate();
    recheckDialog(this.node);
  }

  protected onAfterAttach(): void {
    this.validate();
    recheckDialog(this.node);
    this.inputs.get('name')!.focus();
  }
}

/** Where the editor reads and writes tags: the notebook's cells in order. */
export interface ITagStore {
  cells(): INotebookCell[];
  write(index: number, tags: string[]): void;
}
