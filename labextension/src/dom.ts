/**
 * Small DOM helpers shared by the views (jobs panel, job view, submit dialog, step editor):
 * a view imports these from here, never from another view's file.
 */

import { formatSeconds } from './jobstate';
import { IJob, IResources, IStep, Status, TERMINAL } from './tokens';

/** A new `<tag class="className">text</tag>`. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** What a step asks for, in words: `2 GPU · 16Gi memory · 4 CPU · image x`, or `` for nothing. */
export function resourcesText(step: { resources?: IResources | null }): string {
  const r = step.resources;
  if (!r) {
    return '';
  }
  const parts: string[] = [];
  if (r.gpu) {
    parts.push(`${r.gpu} GPU`);
  }
  if (r.memory) {
    parts.push(`${r.memory} memory`);
  }
  if (r.cpu) {
    parts.push(`${r.cpu} CPU`);
  }
  if (r.image) {
    parts.push(`image ${r.image}`);
  }
  for (const [key, value] of Object.entries(r.extra_limits ?? {})) {
    parts.push(`${key}=${value}`);
  }
  return parts.join(' · ');
}

/** The `input` events `recheckDialog` sent (a body ignores its own). */
const rechecks = new WeakSet<Event>();

/**
 * A JupyterLab Dialog looks for `.jp-mod-error` in its body on `input` events, and may do so
 * before the body's own listener ran: send one more so it looks again after a change.
 */
export function recheckDialog(node: HTMLElement): void {
  const event = new Event('input', { bubbles: true });
  rechecks.add(event);
  node.dispatchEvent(event);
}

/** Whether `event` is one `recheckDialog` sent. */
export function isRecheck(event: Event): boolean {
  return rechecks.has(event);
}

/** How long a job has run (so far, while it runs): `42s`, `2m05s`, `1h02m`. */
export function duration(
  job: Pick<IJob, 'started' | 'finished'>,
  now: number = Date.now()
): string {
  if (!job.started) {
    return '';
  }
  const end = job.finished ? Date.parse(job.finished) : now;
  return formatSeconds((end - Date.parse(job.started)) / 1000);
}

/** `queued (2nd in line)` while a job or step waits for a slot (as the CLI says it), else its status. */
export function statusText(item: { status: Status; queue_position?: number | null }): string {
  const words = item.status.replace('_', ' ');
  const place = item.queue_position;
  if (item.status !== 'queued' || !place) {
    return words;
  }
  const suffix =
    place % 100 >= 10 && place % 100 <= 20
      ? 'th'
      : (({ 1: 'st', 2: 'nd', 3: 'rd' } as Record<number, string>)[place % 10] ?? 'th');
  return `${words} (${place}${suffix} in line)`;
}

/** A coloured status label (`jp-ext-Badge`, colour by `data-status`). */
export function statusBadge(status: Status, text: string = status.replace('_', ' ')): HTMLElement {
  const el = document.createElement('span');
  el.className = 'jp-ext-Badge';
  el.dataset.status = status;
  el.textContent = text;
  if (text !== status.replace('_', ' ')) {
    el.title = `${text}: ${status.replace('_', ' ')}`;
  }
  return el;
}

/**
 * A step's progress bar: full once it succeeded, by cells done while it runs. `data-status`
 * colours it; the text alternative says the same in words.
 */
export function progressBar(
  step: Pick<IStep, 'name' | 'status' | 'cells'>,
  fraction: number,
  cellsDone: number
): HTMLElement {
  const bar = document.createElement('span');
  bar.className = 'jp-ext-Progress';
  bar.dataset.status = step.status;
  bar.setAttribute('role', 'progressbar');
  bar.setAttribute('aria-valuemin', '0');
  bar.setAttribute('aria-valuemax', '100');
  const percent = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
  bar.setAttribute('aria-valuenow', String(percent));
  const cells = step.cells.length
    ? `, ${Math.min(cellsDone, step.cells.length)}/${step.cells.length} cells`
    : '';
  bar.setAttribute('aria-label', `Step ${step.name}: ${step.status.replace('_', ' ')}${cells}`);
  bar.title = `${step.name}: ${step.status.replace('_', ' ')}${cells}`;
  const fill = document.createElement('span');
  fill.className = 'jp-ext-Progress-fill';
  // Finished steps that did not succeed show a full bar in their colour: where it ended.
  const shown = TERMINAL.has(step.status) && step.status !== 'succeeded' ? 100 : percent;
  fill.style.width = `${shown}%`;
  bar.appendChild(fill);
  return bar;
}
