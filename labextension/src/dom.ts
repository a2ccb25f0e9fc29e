/**
 * Small DOM helpers shared by the views (job view, submit dialog, step editor).
 */

import type { IResources } from './tokens';

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
