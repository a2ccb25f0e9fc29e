/**
 * The "Run on cluster" dialog: the backend, the steps the notebook would run with their
 * resources, its parameters (prefilled from the parameters cell) and every problem the
 * server's planner finds, shown before anything is submitted.
 */

import { Widget } from '@lumino/widgets';
import { JupyterExtClient } from './client';
import { el, isRecheck, recheckDialog, resourcesText } from './dom';
import { cellsLabel, pyRepr } from './labels';
import { ISweepInitial, SweepForm } from './sweepform';
import type { IInfo, IJobSpec, IParameter, IPlan, IPlannedStep } from './tokens';

/** What the dialog answers on Run. */
export interface ISubmitChoice {
  backend: string;
  parameters: { [name: string]: any };
  plan: IPlan;
  /** "Ignore cached results": every step runs again. */
  fresh: boolean;
  /** A sweep (null: one run). */
  sweep: IJobSpec['sweep'];
  sweep_mode?: 'grid' | 'zip';
  sweep_parallel?: number | null;
}

/** The text an input shows for a parameter's default. */
export function parameterText(p: IParameter): string {
  if (!p.literal) {
    return p.default;
  }
  if (typeof p.value === 'string') {
    return p.value;
  }
  if (p.value === null) {
    return 'None';
  }
  if (typeof p.value === 'boolean') {
    return p.value ? 'True' : 'False';
  }
  if (p.type === 'float' && Number.isInteger(p.value)) {
    return p.value.toFixed(1); // 1.0 stays a float when edited back
  }
  return JSON.stringify(p.value);
}

/** JSON, also reading Python's True/False/None. */
function looseJson(text: string): { ok: boolean; value?: any } {
  const python: { [word: string]: any } = { True: true, False: false, None: null };
  if (text in python) {
    return { ok: true, value: python[text] };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

/** The value a parameter's input means, or the error to show under it. */
export function parseParameter(p: IParameter, text: string): { value?: any; error?: string } {
  const t = text.trim();
  switch (p.type) {
    case 'str':
      return { value: text };
    case 'int':
      return /^[+-]?[0-9]+$/.test(t) && Number.isSafeInteger(Number(t))
        ? { value: Number(t) }
        : { error: `${p.name}: ${pyRepr(text)} is not a whole number; use e.g. ${p.default}` };
    case 'float': {
      const n = Number(t);
      return t !== '' && Number.isFinite(n)
        ? { value: n }
        : { error: `${p.name}: ${pyRepr(text)} is not a number; use e.g. ${p.default}` };
    }
    case 'bool': {
      const v = { true: true, false: false }[t.toLowerCase()];
      return v === undefined
        ? { error: `${p.name}: ${pyRepr(text)} is not True or False` }
        : { value: v };
    }
    default: {
      const parsed = looseJson(t);
      if (parsed.ok) {
        return { value: parsed.value };
      }
      if (p.type === 'None' || p.type === 'expression') {
        return { value: text }; // free text: run with it as a string
      }
      return {
        error: `${p.name}: ${pyRepr(text)} is not a ${p.type} value; write it as JSON, e.g. ${p.literal ? JSON.stringify(p.value) : '[1, 2]'}`
      };
    }
  }
}

/** What a step asks for, in words: `2 GPU · 16Gi memory · 4 CPU · image x`. */
export function stepResources(step: IPlannedStep): string {
  return resourcesText(step) || 'default resources';
}

/** Values a dialog starts from other than the notebook's (a re-run: the job's). */
export interface ISubmitInitial extends ISweepInitial {
  /** "Ignore cached results" checked (Run fresh). */
  fresh?: boolean;
  /** Parameter values to prefill instead of the defaults. */
  parameters?: { [name: string]: any };
  /** The backend to plan for first. */
  backend?: string;
  /** A line shown on top (what is being re-run). */
  note?: string;
}

/** The text an input shows for `value` of parameter `p`. */
export function valueText(p: IParameter, value: any): string {
  return parameterText({ ...p, value, literal: true });
}

/** The dialog body. Run stays disabled while it loads or while anything is wrong. */
export class SubmitDialogBody extends Widget {
  private info: IInfo | null = null;
  private plan: IPlan | null = null;
  private failure = '';
  private loading = true;
  private readonly paramInputs = new Map<string, HTMLInputElement>();
  private readonly paramErrors = new Map<string, HTMLElement>();
  private readonly typed = new Map<string, string>();
  private readonly initialValues = new Map<string, any>();
  private readonly blocker = el('span', 'jp-mod-error');
  /** The sweep section (its own element, kept across re-renders). */
  readonly sweepForm: SweepForm;
  private readonly fresh = el('input', '');
  /** Resolves once the first plan is shown (for tests and callers that wait). */
  readonly ready: Promise<void>;

  constructor(
    private readonly client: JupyterExtClient,
    readonly notebook: string,
    private readonly initial: ISubmitInitial = {}
  ) {
    super();
    for (const [name, value] of Object.entries(initial.parameters ?? {})) {
      // Shown as typed values once the plan says each parameter's type.
      this.initialValues.set(name, value);
    }
    this.addClass('jp-ext-SubmitDialog');
    this.node.dataset.testid = 'jupyter-ext-submit-dialog';
    this.blocker.hidden = true;
    this.sweepForm = new SweepForm(parseParameter, valueText, initial);
    this.fresh.type = 'checkbox';
    this.fresh.checked = !!initial.fresh;
    this.fresh.dataset.testid = 'jupyter-ext-submit-fresh';
    this.node.addEventListener('input', this);
    this.node.addEventListener('change', this);
    this.render();
    this.ready = this.load();
  }

  private async load(backend?: string): Promise<void> {
    this.loading = true;
    this.failure = '';
    this.render();
    try {
      this.info ??= await this.client.info();
      const wanted = backend ?? this.initial.backend;
      this.plan = await this.client.plan(
        this.notebook,
        wanted && this.info.backends.includes(wanted) ? wanted : this.info.default_backend
      );
    } catch (err) {
      this.plan = null;
      this.failure = (err as Error).message || String(err);
    }
    this.loading = false;
    this.render();
  }

  /** Backend, parameters that differ from the notebook's defaults, and the plan shown. */
  getValue(): ISubmitChoice {
    const parameters: { [name: string]: any } = {};
    const sweep = this.sweepForm.value(); // throws what is wrong with it
    const swept = new Set(Object.keys(sweep?.sweep ?? {}));
    for (const p of this.plan?.parameters ?? []) {
      const input = this.paramInputs.get(p.name);
      if (!input || input.value === parameterText(p) || swept.has(p.name)) {
        continue; // unchanged (the notebook's own default runs), or swept
      }
      const parsed = parseParameter(p, input.value);
      if (parsed.error) {
        throw new Error(parsed.error);
      }
      parameters[p.name] = parsed.value;
    }
    return {
      backend: this.plan!.backend,
      parameters,
      plan: this.plan!,
      fresh: this.fresh.checked,
      ...(sweep ?? { sweep: null })
    };
  }

  handleEvent(event: Event): void {
    if (isRecheck(event)) {
      return;
    }
    const target = event.target as HTMLElement;
    if (event.type === 'change' && target.dataset.testid === 'jupyter-ext-submit-backend') {
      void this.load((target as HTMLSelectElement).value);
      return;
    }
    if (event.type === 'input') {
      this.checkParameters();
      recheckDialog(this.node);
    }
  }

  protected onAfterAttach(): void {
    recheckDialog(this.node);
  }

  /** Inline errors under parameters; true when every parameter is valid. */
  private checkParameters(): boolean {
    let ok = true;
    const swept = this.sweepForm.swept;
    for (const p of this.plan?.parameters ?? []) {
      const input = this.paramInputs.get(p.name);
      if (!input) {
        continue; // not shown (yet)
      }
      // A swept parameter runs with the sweep's values: its own input is not used.
      input.disabled = swept.has(p.name);
      input.title = swept.has(p.name)
        ? `${p.name} is swept: its values are set under Sweep`
        : p.help || `${p.type}, default ${p.default}`;
      const error =
        input.disabled || input.value === parameterText(p)
          ? undefined
          : parseParameter(p, input.value).error;
      const node = this.paramErrors.get(p.name)!;
      node.textContent = error ?? '';
      node.hidden = !error;
      input.classList.toggle('jp-mod-error', !!error);
      ok &&= !error;
    }
    this.blocker.hidden = true;
    this.blocker.className = this.runnable() ? '' : 'jp-mod-error';
    return ok;
  }

  private runnable(): boolean {
    return !this.loading && !this.failure && !!this.plan && !this.plan.error;
  }

  private render(): void {
    const node = this.node;
    const focused = document.activeElement as HTMLElement | null;
    const focusParam = focused?.dataset?.param;
    // Values typed so far survive a re-plan (e.g. another backend).
    for (const [name, input] of this.paramInputs) {
      this.typed.set(name, input.value);
    }
    node.replaceChildren(this.blocker);
    this.paramInputs.clear();
    this.paramErrors.clear();

    if (this.initial.note) {
      const note = el('div', 'jp-ext-SubmitDialog-note', this.initial.note);
      note.dataset.testid = 'jupyter-ext-submit-note';
      node.append(note);
    }
    const head = el('div', 'jp-ext-SubmitDialog-row');
    head.append(el('span', 'jp-ext-SubmitDialog-label', 'Notebook'), el('code', '', this.notebook));
    node.append(head);

    const backendRow = el('label', 'jp-ext-SubmitDialog-row');
    const select = el('select', 'jp-mod-styled');
    select.dataset.testid = 'jupyter-ext-submit-backend';
    const chosen = this.plan?.backend ?? this.info?.default_backend;
    for (const name of this.info?.backends ?? (chosen ? [chosen] : [])) {
      const option = el('option', '', name);
      option.value = name;
      option.selected = name === chosen;
      select.append(option);
    }
    select.disabled = this.loading || !this.info;
    backendRow.append(el('span', 'jp-ext-SubmitDialog-label', 'Backend'), select);
    node.append(backendRow);

    if (this.loading) {
      node.append(el('div', 'jp-ext-SubmitDialog-loading', 'Reading the notebook…'));
    }
    if (this.failure) {
      const error = el('div', 'jp-ext-SubmitDialog-error', this.failure);
      error.dataset.testid = 'jupyter-ext-submit-error';
      node.append(error);
    }
    const plan = this.plan;
    // The label column fits the longest label, so none wraps mid-word.
    const labels = ['Notebook', 'Backend', ...(plan?.parameters ?? []).map(p => p.name)];
    labels.push(...(plan?.steps ?? []).map(st => st.name));
    const longest = Math.max(...labels.map(l => l.length));
    node.style.setProperty('--jp-ext-label-width', `clamp(96px, ${longest + 2}ch, 240px)`);
    if (plan && !this.loading) {
      if (plan.error) {
        this.renderError(plan.error);
      }
      this.renderSteps(plan);
      this.renderParameters(plan);
      this.renderOptions(plan);
      for (const warning of plan.warnings) {
        node.append(el('div', 'jp-ext-SubmitDialog-warning', warning.message));
      }
    }
    this.checkParameters();
    if (focusParam) {
      this.paramInputs.get(focusParam)?.focus();
    }
    recheckDialog(this.node);
  }

  /** The sweep section and "Ignore cached results" (kept across re-renders, with what was typed). */
  private renderOptions(plan: IPlan): void {
    this.sweepForm.setParameters(plan.parameters);
    if (plan.parameters.length) {
      this.node.append(this.sweepForm.node);
    }
    const cached = plan.steps.filter(s => s.cache).length;
    const row = el('label', 'jp-ext-SubmitDialog-fresh');
    row.append(this.fresh, ' Ignore cached results (run every step again)');
    row.title = cached
      ? `${cached} step${cached === 1 ? '' : 's'} of this notebook reuse an earlier result when their inputs did not change; checked, every step runs again (its new result is cached).`
      : 'Steps tagged cache reuse an earlier result when their inputs did not change; checked, every step runs again.';
    this.node.append(row);
  }

  private renderError(error: NonNullable<IPlan['error']>): void {
    const box = el('div', 'jp-ext-SubmitDialog-error');
    box.dataset.testid = 'jupyter-ext-submit-error';
    const details: any[] = Array.isArray(error.details) ? error.details : [];
    if (details.length > 1) {
      box.append(el('div', '', `The notebook cannot run yet: ${details.length} problems.`));
      const list = el('ul', '');
      for (const d of details) {
        const item = el('li', '', String(d.message));
        if (typeof d.cell === 'number') {
          item.dataset.cell = String(d.cell);
        }
        list.append(item);
      }
      box.append(list);
    } else {
      box.textContent = String(error.message ?? 'the notebook cannot run');
    }
    if (typeof error.cell === 'number') {
      box.dataset.cell = String(error.cell);
    }
    if (error.step) {
      box.dataset.step = String(error.step);
    }
    this.node.append(box);
  }

  private renderSteps(plan: IPlan): void {
    if (!plan.steps.length) {
      return;
    }
    const section = el('div', 'jp-ext-SubmitDialog-section');
    section.append(
      el('div', 'jp-ext-SubmitDialog-heading', plan.single ? 'One step (no step tags)' : 'Steps')
    );
    for (const step of plan.steps) {
      const row = el('div', 'jp-ext-SubmitDialog-step');
      row.dataset.testid = 'jupyter-ext-submit-step';
      row.dataset.step = step.name;
      row.append(
        el('span', 'jp-ext-SubmitDialog-stepName', step.name),
        el('span', 'jp-ext-SubmitDialog-stepResources', stepResources(step)),
        el(
          'span',
          'jp-ext-SubmitDialog-stepMeta',
          [
            cellsLabel(step.cells.map(c => c.index)),
            step.after.length ? `after ${step.after.join(', ')}` : '',
            step.timeout ? `timeout ${Math.round(step.timeout)}s` : '',
            step.retries ? `${step.retries} retries` : ''
          ]
            .filter(Boolean)
            .join(' · ')
        )
      );
      section.append(row);
    }
    this.node.append(section);
  }

  private renderParameters(plan: IPlan): void {
    if (!plan.parameters.length) {
      return;
    }
    const section = el('div', 'jp-ext-SubmitDialog-section');
    section.append(el('div', 'jp-ext-SubmitDialog-heading', 'Parameters'));
    for (const p of plan.parameters) {
      const row = el('label', 'jp-ext-SubmitDialog-param');
      const name = el('span', 'jp-ext-SubmitDialog-label', p.name);
      const input = el('input', 'jp-mod-styled');
      input.dataset.testid = 'jupyter-ext-param';
      input.dataset.param = p.name;
      input.dataset.type = p.type;
      const initial = this.initialValues.has(p.name)
        ? valueText(p, this.initialValues.get(p.name))
        : undefined;
      input.value = this.typed.get(p.name) ?? initial ?? parameterText(p);
      input.spellcheck = false;
      input.title = p.help || `${p.type}, default ${p.default}`;
      const type = el('span', 'jp-ext-SubmitDialog-type', p.type);
      const error = el('div', 'jp-ext-FieldError');
      error.dataset.testid = 'jupyter-ext-submit-error';
      error.dataset.param = p.name;
      error.hidden = true;
      row.append(name, input, type, error);
      if (p.help) {
        row.append(el('div', 'jp-ext-SubmitDialog-help', p.help));
      }
      section.append(row);
      this.paramInputs.set(p.name, input);
      this.paramErrors.set(p.name, error);
    }
    this.node.append(section);
  }
}
