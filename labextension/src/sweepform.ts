/**
 * The sweep part of the "Run on cluster" dialog: rows of a parameter (one of the notebook's)
 * and its values, comma-separated; grid (every combination) or zip (the i-th values together);
 * how many runs at once. Each value is read as the parameter's type, as the dialog reads a
 * parameter's single value; errors show under their row and keep Run disabled.
 */

import { el, recheckDialog } from './dom';
import type { IJobSpec, IParameter } from './tokens';

/** How the dialog reads one parameter's text (submitdialog.ts `parseParameter`). */
export type ParseParameter = (p: IParameter, text: string) => { value?: any; error?: string };

/** What a sweep adds to a job spec. */
export type SweepSpec = Required<Pick<IJobSpec, 'sweep' | 'sweep_mode' | 'sweep_parallel'>>;

/** What the form starts from (a re-run of a sweep: its values). */
export interface ISweepInitial {
  sweep?: { [name: string]: any[] } | null;
  sweep_mode?: 'grid' | 'zip';
  sweep_parallel?: number | null;
}

/**
 * `text` split at its commas, except those inside brackets or quotes (`[1, 2], [3]` is two
 * values); each piece trimmed, empty ones dropped.
 */
export function splitValues(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quote: string | null = null;
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === '\\' && i + 1 < text.length) {
        current += c + text[++i];
        continue;
      }
      if (c === quote) {
        quote = null;
      }
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if ('[{('.includes(c)) {
      depth++;
    } else if (']})'.includes(c)) {
      depth = Math.max(0, depth - 1);
    } else if (c === ',' && depth === 0) {
      out.push(current);
      current = '';
      continue;
    }
    current += c;
  }
  out.push(current);
  return out.map(s => s.trim()).filter(s => s !== '');
}

/** A string value typed in quotes (`'a, b'`) without them. */
function unquote(piece: string): string {
  const m = /^(['"])(.*)\1$/s.exec(piece);
  return m ? m[2] : piece;
}

/** The values of one row, read as `p`'s type, or the first error. */
export function parseSweepValues(
  p: IParameter,
  text: string,
  parse: ParseParameter
): { values?: any[]; error?: string } {
  const pieces = splitValues(text);
  if (!pieces.length) {
    return { error: `${p.name}: give its values, separated by commas (or remove the row)` };
  }
  const values: any[] = [];
  for (const piece of pieces) {
    const parsed = parse(p, p.type === 'str' ? unquote(piece) : piece);
    if (parsed.error) {
      return { error: parsed.error };
    }
    values.push(parsed.value);
  }
  return { values };
}

/** How many runs a sweep makes: the product of the lengths (grid), or the common length (zip). */
export function sweepCount(sweep: { [name: string]: any[] }, mode: 'grid' | 'zip'): number {
  const lengths = Object.values(sweep).map(v => v.length);
  if (!lengths.length) {
    return 0;
  }
  return mode === 'zip' ? Math.min(...lengths) : lengths.reduce((a, b) => a * b, 1);
}

/** One row of the form, as typed. */
export interface ISweepRow {
  name: string;
  text: string;
}

/**
 * The spec of the rows (null: no rows, so no sweep), or what is wrong: per row (its index) or
 * for the whole (zip with unequal lengths, a parallelism that is not a whole number).
 */
export function sweepSpec(
  rows: readonly ISweepRow[],
  parameters: readonly IParameter[],
  mode: 'grid' | 'zip',
  parallel: string,
  parse: ParseParameter
): {
  spec: SweepSpec | null;
  rowErrors: (string | null)[];
  error: string | null;
  /** What `error` is about: the runs-at-once input, or the values' lengths (zip). */
  field: 'parallel' | 'sweep' | null;
} {
  const rowErrors: (string | null)[] = rows.map(() => null);
  const sweep: { [name: string]: any[] } = {};
  rows.forEach((row, i) => {
    const p = parameters.find(q => q.name === row.name);
    if (!p) {
      rowErrors[i] = `${row.name || 'this row'}: choose one of the notebook's parameters`;
    } else if (row.name in sweep) {
      rowErrors[i] = `${row.name} is swept twice: put all its values in one row`;
    } else {
      const parsed = parseSweepValues(p, row.text, parse);
      if (parsed.error) {
        rowErrors[i] = parsed.error;
      } else {
        sweep[row.name] = parsed.values!;
      }
    }
  });
  let error: string | null = null;
  let field: 'parallel' | 'sweep' | null = null;
  const t = parallel.trim();
  const runsAtOnce = t === '' ? null : Number(t);
  if (runsAtOnce !== null && !(Number.isSafeInteger(runsAtOnce) && runsAtOnce >= 1)) {
    error = `Runs at once: ${JSON.stringify(parallel)} is not a whole number of 1 or more`;
    field = 'parallel';
  }
  if (mode === 'zip' && rowErrors.every(e => e === null)) {
    const lengths = new Set(Object.values(sweep).map(v => v.length));
    if (lengths.size > 1) {
      field = 'sweep';
      error = `Zip pairs the i-th values of each parameter, so each needs as many values (${Object.entries(
        sweep
      )
        .map(([k, v]) => `${k}: ${v.length}`)
        .join(', ')})`;
    }
  }
  if (!rows.length || error || rowErrors.some(e => e !== null)) {
    return { spec: null, rowErrors, error, field };
  }
  return {
    spec: { sweep, sweep_mode: mode, sweep_parallel: runsAtOnce },
    rowErrors,
    error,
    field
  };
}

/** The text a row shows for values a re-run starts from. */
function valuesText(values: any[], show: (value: any) => string): string {
  return values.map(show).join(', ');
}

/** The sweep section of the dialog (a plain element: the dialog re-renders around it). */
export class SweepForm {
  readonly node = el('div', 'jp-ext-SubmitDialog-section jp-ext-SweepForm');
  private parameters: IParameter[] = [];
  private readonly rows = el('div', 'jp-ext-SweepForm-rows');
  private readonly add = el('button', 'jp-Button jp-mod-styled jp-mod-reject');
  private readonly grid = el('input', '');
  private readonly zip = el('input', '');
  private readonly parallel = el('input', 'jp-mod-styled');
  private readonly count = el('div', 'jp-ext-SweepForm-count');
  private readonly error = el('div', 'jp-ext-FieldError');
  private pending: ISweepInitial | null;

  constructor(
    private readonly parse: ParseParameter,
    private readonly show: (p: IParameter, value: any) => string,
    initial: ISweepInitial = {}
  ) {
    this.pending = initial.sweep && Object.keys(initial.sweep).length ? initial : null;
    this.node.dataset.testid = 'jupyter-ext-sweep-form';
    this.node.append(el('div', 'jp-ext-SubmitDialog-heading', 'Sweep'));
    this.node.append(
      el(
        'div',
        'jp-ext-SweepForm-help',
        'One run per combination of the values (comma-separated), their results in one table.'
      )
    );
    this.add.type = 'button';
    this.add.textContent = '+ Sweep a parameter';
    this.add.dataset.testid = 'jupyter-ext-sweep-add';
    this.add.onclick = () => {
      this.addRow();
      this.changed();
      this.rows.querySelector<HTMLInputElement>('.jp-ext-SweepForm-row:last-child input')?.focus();
    };
    const options = el('div', 'jp-ext-SweepForm-options');
    for (const [input, value, label, title] of [
      [this.grid, 'grid', 'grid', 'Every combination of the values'],
      [this.zip, 'zip', 'zip', 'The first values together, then the second ones, ...']
    ] as const) {
      input.type = 'radio';
      input.name = 'jupyter-ext-sweep-mode';
      input.value = value;
      input.dataset.testid = 'jupyter-ext-sweep-mode';
      const wrap = el('label', 'jp-ext-SweepForm-mode');
      wrap.title = title;
      wrap.append(input, ` ${label}`);
      options.append(wrap);
    }
    (initial.sweep_mode === 'zip' ? this.zip : this.grid).checked = true;
    const parallelLabel = el('label', 'jp-ext-SweepForm-parallel');
    this.parallel.dataset.testid = 'jupyter-ext-sweep-parallel';
    this.parallel.inputMode = 'numeric';
    this.parallel.placeholder = '4';
    this.parallel.size = 3;
    this.parallel.value =
      initial.sweep_parallel === null || initial.sweep_parallel === undefined
        ? ''
        : String(initial.sweep_parallel);
    parallelLabel.append('runs at once ', this.parallel);
    options.append(parallelLabel);
    this.count.dataset.testid = 'jupyter-ext-sweep-count';
    this.error.dataset.testid = 'jupyter-ext-sweep-error';
    this.error.hidden = true;
    this.node.append(this.rows, this.add, options, this.count, this.error);
    this.node.addEventListener('input', () => this.check());
    this.node.addEventListener('change', () => this.check());
    this.render();
  }

  /** The notebook's parameters (after each plan): the rows' choices. */
  setParameters(parameters: readonly IParameter[]): void {
    this.parameters = [...parameters];
    if (this.pending && parameters.length) {
      for (const [name, values] of Object.entries(this.pending.sweep ?? {})) {
        const p = parameters.find(q => q.name === name);
        this.addRow(name, p ? valuesText(values, v => this.show(p, v)) : values.join(', '));
      }
      this.pending = null;
    }
    for (const row of this.rowNodes()) {
      this.fillSelect(row.select, row.select.value);
    }
    this.render();
  }

  /** The swept parameters' names, as the rows stand. */
  get swept(): Set<string> {
    return new Set(this.rowNodes().map(r => r.select.value));
  }

  /** The sweep to submit (null: none), or an Error saying what is wrong. */
  value(): SweepSpec | null {
    const result = this.result();
    const first = result.rowErrors.find(e => e !== null) ?? result.error;
    if (first) {
      throw new Error(first);
    }
    return result.spec;
  }

  /** Show the errors and the number of runs; true when the form can be submitted. */
  check(): boolean {
    const result = this.result();
    this.rowNodes().forEach((row, i) => {
      const error = result.rowErrors[i];
      row.error.textContent = error ?? '';
      row.error.hidden = !error;
      row.input.classList.toggle('jp-mod-error', !!error);
    });
    this.error.textContent = result.error ?? '';
    this.error.hidden = !result.error;
    this.parallel.classList.toggle('jp-mod-error', result.field === 'parallel');
    this.error.classList.toggle('jp-mod-error', !!result.error);
    const spec = result.spec;
    const n = spec ? sweepCount(spec.sweep!, spec.sweep_mode) : 0;
    this.count.textContent = spec
      ? `${n} run${n === 1 ? '' : 's'} (${Object.entries(spec.sweep!)
          .map(([k, v]) => `${k}: ${v.length}`)
          .join(spec.sweep_mode === 'zip' ? ' paired with ' : ' × ')})`
      : '';
    this.count.hidden = !spec;
    return !result.error && result.rowErrors.every(e => e === null);
  }

  private result() {
    const rows = this.rowNodes().map(r => ({ name: r.select.value, text: r.input.value }));
    return sweepSpec(
      rows,
      this.parameters,
      this.zip.checked ? 'zip' : 'grid',
      this.parallel.value,
      this.parse
    );
  }

  private rowNodes(): { select: HTMLSelectElement; input: HTMLInputElement; error: HTMLElement }[] {
    return Array.from(this.rows.children).map(node => ({
      select: node.querySelector('select')!,
      input: node.querySelector('input')!,
      error: node.querySelector<HTMLElement>('.jp-ext-FieldError')!
    }));
  }

  private fillSelect(select: HTMLSelectElement, chosen: string): void {
    const names = this.parameters.map(p => p.name);
    if (chosen && !names.includes(chosen)) {
      names.push(chosen); // kept, and reported, rather than silently swapped
    }
    select.replaceChildren(
      ...names.map(name => {
        const o = el('option', '', name);
        o.value = name;
        o.selected = name === chosen;
        return o;
      })
    );
  }

  private addRow(name?: string, text = ''): void {
    const row = el('div', 'jp-ext-SweepForm-row');
    row.dataset.testid = 'jupyter-ext-sweep-entry';
    const select = el('select', 'jp-mod-styled');
    select.dataset.testid = 'jupyter-ext-sweep-name';
    select.setAttribute('aria-label', 'Swept parameter');
    const taken = this.swept;
    const chosen = name ?? this.parameters.find(p => !taken.has(p.name))?.name ?? '';
    this.fillSelect(select, chosen);
    const input = el('input', 'jp-mod-styled');
    input.dataset.testid = 'jupyter-ext-sweep-values';
    input.spellcheck = false;
    input.value = text;
    const p = this.parameters.find(q => q.name === chosen);
    input.placeholder = p?.type === 'str' ? 'a, b, c' : '0.1, 0.01, 0.001';
    input.setAttribute('aria-label', 'Values, separated by commas');
    const remove = el('button', 'jp-Button jp-mod-minimal jp-ext-SweepForm-remove', '✕');
    remove.type = 'button';
    remove.dataset.testid = 'jupyter-ext-sweep-remove';
    remove.title = 'Do not sweep this parameter';
    remove.setAttribute('aria-label', 'Remove this swept parameter');
    remove.onclick = () => {
      row.remove();
      this.changed();
    };
    const error = el('div', 'jp-ext-FieldError');
    error.hidden = true;
    row.append(select, input, remove, error);
    this.rows.append(row);
  }

  private render(): void {
    this.add.disabled = this.parameters.length === 0;
    this.add.title = this.parameters.length
      ? 'Run the notebook for several values of a parameter'
      : 'The notebook has no parameters cell to sweep';
    this.check();
  }

  /** Rows came or went: check again, and let the dialog look at its Run button again. */
  private changed(): void {
    this.check();
    recheckDialog(this.node);
  }
}
