/**
 * Words for cells and steps, as the Lab shows them (no tag grammar here: the server reads tags,
 * tagcheck.ts asks it).
 */

import { INotebookSteps, SettingName, stepNamed } from './tagcheck';

/** Python's `repr()` of a value, so messages made here read as the server's do. */
export function pyRepr(value: unknown): string {
  if (typeof value !== 'string') {
    if (value === null || value === undefined) {
      return 'None';
    }
    if (typeof value === 'boolean') {
      return value ? 'True' : 'False';
    }
    return String(value);
  }
  const quote = value.includes("'") && !value.includes('"') ? '"' : "'";
  let out = '';
  for (const ch of value) {
    if (ch === '\\') {
      out += '\\\\';
    } else if (ch === quote) {
      out += '\\' + ch;
    } else if (ch === '\n') {
      out += '\\n';
    } else if (ch === '\r') {
      out += '\\r';
    } else if (ch === '\t') {
      out += '\\t';
    } else if (ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f) {
      out += '\\x' + ch.charCodeAt(0).toString(16).padStart(2, '0');
    } else {
      out += ch;
    }
  }
  return quote + out + quote;
}

/**
 * How a person names the cell at 0-based `index` (over all cells, markdown included): as Lab
 * numbers it, from 1 ("cell 4" is Lab's "Cell 4/7"). Payloads and events keep 0-based indices;
 * only words use this (the server's messages say the same).
 */
export function cellLabel(index: number): string {
  return `cell ${index + 1}`;
}

/** Cells in words: `cell 2`, `cells 2, 3`. */
export function cellsLabel(indices: readonly number[]): string {
  return indices.length === 1
    ? cellLabel(indices[0])
    : `cells ${indices.map(i => i + 1).join(', ')}`;
}

/** A short summary of a step's resources: `2 GPU · 16Gi · 4 CPU`. */
export function resourceSummary(settings: Partial<Record<SettingName, string>>): string {
  const parts: string[] = [];
  if (settings.gpu && settings.gpu !== '0') {
    parts.push(`${settings.gpu} GPU`);
  }
  if (settings.memory) {
    parts.push(settings.memory);
  }
  if (settings.cpu) {
    parts.push(`${settings.cpu} CPU`);
  }
  return parts.join(' · ');
}

/** What the chip of cell `index` says: the step it opens with its resources, or `+ step`. */
export function chipText(nb: INotebookSteps, index: number): string {
  const cell = nb.cells[index];
  const step = cell?.opens ? stepNamed(nb, cell.step) : undefined;
  if (!step) {
    return '+ step';
  }
  const summary = resourceSummary(step.settings);
  return summary ? `${step.name} · ${summary}` : step.name;
}
