/**
 * The cell-tag grammar in the browser: read a notebook's tags the way the server's planner
 * does (jupyter_ext/notebook/tags.py and plan.py, Kale's `step:`/`block:`/`prev:` included),
 * validate what the step editor is about to write with the same rules, and write our
 * canonical tags while keeping every tag that is not ours.
 *
 * Pure functions over plain data (no JupyterLab imports), so jest tests them against the
 * same cases as tests/unit/test_tags.py.
 */

// -- values: Kubernetes quantities, GPU counts, durations, retries (jupyter_ext/quantity.py) ---------

/** A value a user typed is not acceptable; `message` says what would be. */
export class TagError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TagError';
  }
}

/** Python's `repr()` of a string, so messages read exactly as the server's do. */
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

/** An exact decimal: `m * 10**e`. */
interface IDecimal {
  m: bigint;
  e: number;
}

const BINARY: { [suffix: string]: bigint } = {
  Ki: 2n ** 10n,
  Mi: 2n ** 20n,
  Gi: 2n ** 30n,
  Ti: 2n ** 40n,
  Pi: 2n ** 50n,
  Ei: 2n ** 60n
};
const DECIMAL: { [suffix: string]: number } = {
  n: -9,
  u: -6,
  m: -3,
  '': 0,
  k: 3,
  K: 3,
  M: 6,
  G: 9,
  T: 12,
  P: 15,
  E: 18
};
const QUANTITY = /^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([KMGTPE]i|[numkKMGTPE]?)\s*$/;
const MAX_BYTES = 2n ** 70n;

function quantity(text: string, field: string, example: string): IDecimal {
  if (text.trim().startsWith('-')) {
    throw new TagError(
      `${field}: ${pyRepr(text)} is negative; use a positive value such as ${pyRepr(example)}`
    );
  }
  const match = QUANTITY.exec(text);
  if (!match) {
    throw new TagError(
      `${field}: ${pyRepr(text)} is not a Kubernetes quantity; use e.g. ${pyRepr(example)} ` +
        '(suffixes Ki, Mi, Gi, Ti or k, M, G, T, or m for thousandths)'
    );
  }
  const [whole, fraction = ''] = match[1].split('.');
  let m = BigInt((whole || '0') + fraction);
  let e = -fraction.length;
  const suffix = match[2];
  if (suffix in BINARY) {
    m *= BINARY[suffix];
  } else {
    e += DECIMAL[suffix];
  }
  return { m, e };
}

/** Whether `d` > `bound`. */
function greater(d: IDecimal, bound: bigint): boolean {
  return d.e >= 0 ? d.m * 10n ** BigInt(d.e) > bound : d.m > bound * 10n ** BigInt(-d.e);
}

/** A canonical text of an exact decimal, to compare two values that mean the same. */
function decimalKey(d: IDecimal): string {
  let { m, e } = d;
  while (m !== 0n && m % 10n === 0n) {
    m /= 10n;
    e += 1;
  }
  return m === 0n ? '0' : `${m}e${e}`;
}

/** '16Gi' is valid memory (returns a comparable key); anything else throws TagError. */
export function parseMemory(value: string, field = 'memory'): string {
  const amount = quantity(value, field, '16Gi');
  if (amount.m <= 0n) {
    throw new TagError(`${field}: ${pyRepr(value)} must be more than zero; use e.g. '16Gi'`);
  }
  if (greater(amount, MAX_BYTES)) {
    throw new TagError(`${field}: ${pyRepr(value)} is larger than any machine; use e.g. '16Gi'`);
  }
  return decimalKey(amount);
}

/** '500m' or '4' cores (millicore precision at most); returns a comparable key. */
export function parseCpu(value: string, field = 'cpu'): string {
  const amount = quantity(value, field, '4');
  if (amount.m <= 0n) {
    throw new TagError(`${field}: ${pyRepr(value)} must be more than zero; use e.g. '4' or '500m'`);
  }
  if (greater(amount, 100000n)) {
    throw new TagError(
      `${field}: ${pyRepr(value)} is more cores than any machine has; use e.g. '4'`
    );
  }
  const milli = amount.e + 3;
  if (milli < 0 && amount.m % 10n ** BigInt(-milli) !== 0n) {
    throw new TagError(`${field}: ${pyRepr(value)} is finer than a millicore; use e.g. '500m'`);
  }
  return decimalKey(amount);
}

/** A whole number of GPUs, 0 to 1024. */
export function parseGpu(value: string, field = 'gpu'): number {
  if (!/^\s*-?[0-9]{1,8}\s*$/.test(value)) {
    throw new TagError(`${field}: ${pyRepr(value)} is not a whole number of GPUs; use e.g. 2`);
  }
  const number = parseInt(value.trim(), 10);
  if (number < 0) {
    throw new TagError(`${field}: ${pyRepr(value)} is negative; use 0 or more GPUs`);
  }
  if (number > 1024) {
    throw new TagError(`${field}: ${pyRepr(value)} GPUs is more than any node has`);
  }
  return number;
}

const DURATION_UNITS: { [unit: string]: number } = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** '2h', '90m', '1h30m', '45s' or a number of seconds -> seconds (1s to 366d). */
export function parseDuration(value: string, field = 'timeout'): number {
  const text = value.trim();
  let seconds: number;
  if (/^[0-9]+(?:\.[0-9]+)?$/.test(text)) {
    seconds = parseFloat(text);
  } else {
    const part = /([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)/g;
    const parts = [...text.matchAll(part)];
    if (parts.length === 0 || text.replace(part, '').trim()) {
      throw new TagError(
        `${field}: ${pyRepr(value)} is not a duration; use e.g. '2h', '90m', '1h30m' or '45s'`
      );
    }
    seconds = parts.reduce((sum, p) => sum + parseFloat(p[1]) * DURATION_UNITS[p[2]], 0);
  }
  if (!(seconds > 0) || seconds > 366 * 86400) {
    throw new TagError(`${field}: ${pyRepr(value)} must be between 1s and 366d`);
  }
  return seconds;
}

/** A whole number of retries, 0 to 100. */
export function parseRetries(value: string, field = 'retries'): number {
  if (!/^\s*[0-9]{1,8}\s*$/.test(value)) {
    throw new TagError(`${field}: ${pyRepr(value)} is not a whole number of retries; use e.g. 2`);
  }
  const number = parseInt(value.trim(), 10);
  if (number > 100) {
    throw new TagError(`${field}: ${pyRepr(value)} retries is too many; use at most 100`);
  }
  return number;
}

// -- near misses (Python's difflib.get_close_matches, same scores and order) ---------------------------

/** difflib.SequenceMatcher(None, a, b).ratio() (no junk: the strings here are short). */
export function similarity(a: string, b: string): number {
  const total = a.length + b.length;
  if (total === 0) {
    return 1;
  }
  const positions = new Map<string, number[]>();
  for (let j = 0; j < b.length; j++) {
    const list = positions.get(b[j]) ?? [];
    list.push(j);
    positions.set(b[j], list);
  }
  const longest = (alo: number, ahi: number, blo: number, bhi: number): number[] => {
    let best = [alo, blo, 0];
    let lengths = new Map<number, number>();
    for (let i = alo; i < ahi; i++) {
      const next = new Map<number, number>();
      for (const j of positions.get(a[i]) ?? []) {
        if (j < blo) {
          continue;
        }
        if (j >= bhi) {
          break;
        }
        const k = (lengths.get(j - 1) ?? 0) + 1;
        next.set(j, k);
        if (k > best[2]) {
          best = [i - k + 1, j - k + 1, k];
        }
      }
      lengths = next;
    }
    return best;
  };
  let matched = 0;
  const queue: number[][] = [[0, a.length, 0, b.length]];
  while (queue.length) {
    const [alo, ahi, blo, bhi] = queue.pop()!;
    const [i, j, k] = longest(alo, ahi, blo, bhi);
    if (k) {
      matched += k;
      if (alo < i && blo < j) {
        queue.push([alo, i, blo, j]);
      }
      if (i + k < ahi && j + k < bhi) {
        queue.push([i + k, ahi, j + k, bhi]);
      }
    }
  }
  return (2 * matched) / total;
}

/** difflib.get_close_matches(word, possibilities, n, cutoff). */
export function closeMatches(
  word: string,
  possibilities: readonly string[],
  n = 3,
  cutoff = 0.6
): string[] {
  const scored: [number, string][] = [];
  for (const x of possibilities) {
    const score = similarity(x, word);
    if (score >= cutoff) {
      scored.push([score, x]);
    }
  }
  // heapq.nlargest on (score, x): the higher score first, then the larger string.
  scored.sort((p, q) => q[0] - p[0] || (q[1] > p[1] ? 1 : q[1] < p[1] ? -1 : 0));
  return scored.slice(0, n).map(([, x]) => x);
}

/** "; did you mean 'x'?" for the closest of `known`, or the list of known names. */
export function suggest(name: string, known: readonly string[]): string {
  const close = closeMatches(name, known, 1, 0.6);
  if (close.length) {
    return `; did you mean ${pyRepr(close[0])}?`;
  }
  if (known.length) {
    return '; steps are: ' + known.map(k => pyRepr(k)).join(', ');
  }
  return '; the notebook has no steps';
}

// -- one cell's tags (jupyter_ext/notebook/tags.py) -------------------------------------------------------

export type Role = 'step' | 'imports' | 'functions' | 'parameters' | 'skip' | 'injected';
/** What a step asks for, in the order the step editor writes them. */
const SETTING_NAMES = ['gpu', 'memory', 'cpu', 'image', 'timeout', 'retries'] as const;
export type SettingName = (typeof SETTING_NAMES)[number];

export const STEP_NAME = /^[A-Za-z0-9_.-]{1,63}$/;
const LIMIT_KEY = /^[A-Za-z0-9_.\-/]+$/;

export const BARE_TAGS: { [tag: string]: string } = {
  imports: 'imports',
  functions: 'functions',
  parameters: 'parameters',
  'pipeline-parameters': 'parameters',
  skip: 'skip',
  'injected-parameters': 'injected',
  'pipeline-metrics': 'metrics'
};
export const PREFIX_TAGS: { [prefix: string]: string } = {
  step: 'train',
  block: 'train',
  after: 'load',
  prev: 'load',
  gpu: '1',
  memory: '16Gi',
  cpu: '4',
  image: 'python:3.11-slim',
  timeout: '2h',
  retries: '2',
  limit: 'nvidia.com/gpu:1',
  annotation: 'KEY:VALUE',
  label: 'KEY:VALUE'
};
const SYNONYMS: { [word: string]: string } = {
  mem: 'memory',
  ram: 'memory',
  gpus: 'gpu',
  cpus: 'cpu',
  retry: 'retries',
  depends: 'after',
  'depends-on': 'after',
  params: 'parameters',
  param: 'parameters'
};
const TYPO_CUTOFF_PREFIX = 0.75;
const TYPO_CUTOFF_BARE = 0.85;

/**
 * How a person names the cell at 0-based `index` (over all cells, markdown included): as Lab
 * numbers it, from 1 ("cell 4" is Lab's "Cell 4/7"). Payloads and events keep 0-based indices;
 * only words use this (the planner's messages say the same).
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

/** A value one tag sets: `value` as the user wrote it (or the parsed number), `key` to compare. */
export interface ISetting {
  value: string | number;
  key: string;
  tag: string;
}

export interface ICellTags {
  cell: number;
  role: Role | null;
  step: string | null;
  metrics: boolean;
  /** step name -> the tag that named it, in tag order */
  after: Map<string, string>;
  settings: Map<SettingName, ISetting>;
  /** limit key -> [value, tag] */
  limits: Map<string, [string, string]>;
  ignored: string[];
  roleTag: string | null;
}

export interface IProblem {
  message: string;
  cell: number | null;
  step: string | null;
  tag: string | null;
}

function bad(where: string, tag: string, why: string): TagError {
  return new TagError(`${where}: tag ${pyRepr(tag)} ${why}`);
}

function stepName(value: string, tag: string, where: string): string {
  if (!STEP_NAME.test(value)) {
    throw bad(
      where,
      tag,
      `has an invalid step name ${pyRepr(value)}; use 1 to 63 letters, digits, '_', '-' or '.' (e.g. 'train')`
    );
  }
  return value;
}

type Parser = (value: string, field: string) => string | number;
const PARSERS: { [name: string]: Parser } = {
  gpu: parseGpu,
  memory: parseMemory,
  cpu: parseCpu,
  timeout: parseDuration,
  retries: parseRetries
};

function parsed(name: string, value: string, tag: string, where: string): string | number {
  try {
    return PARSERS[name](value, name);
  } catch (err) {
    const message = (err as Error).message;
    const prefix = `${name}: `;
    throw bad(
      where,
      tag,
      'is invalid: ' + (message.startsWith(prefix) ? message.slice(prefix.length) : message)
    );
  }
}

function put(result: ICellTags, name: SettingName, setting: ISetting, where: string): void {
  const old = result.settings.get(name);
  if (old !== undefined && old.key !== setting.key) {
    throw bad(
      where,
      setting.tag,
      `conflicts with tag ${pyRepr(old.tag)} on the same cell; keep one`
    );
  }
  if (old === undefined) {
    result.settings.set(name, setting);
  }
}

function setting(name: SettingName, value: string, tag: string, where: string, result: ICellTags) {
  if (name === 'image') {
    if (!value || /\s/.test(value)) {
      throw bad(
        where,
        tag,
        "needs an image reference without spaces, e.g. 'image:python:3.11-slim'"
      );
    }
    put(result, name, { value, key: value, tag }, where);
    return;
  }
  const key = parsed(name, value, tag, where);
  const kept = name === 'memory' || name === 'cpu' ? value.trim() : key;
  put(result, name, { value: kept, key: String(key), tag }, where);
}

/** The GPU/memory/CPU field a Kale `limit:KEY:VALUE` sets, if any. */
export function limitField(key: string): SettingName | null {
  return key.endsWith('/gpu') ? 'gpu' : key === 'memory' || key === 'cpu' ? key : null;
}

function applyLimit(tag: string, value: string, where: string, result: ICellTags): void {
  const at = value.lastIndexOf(':');
  const key = at >= 0 ? value.slice(0, at) : '';
  const amount = at >= 0 ? value.slice(at + 1) : '';
  if (at < 0 || !LIMIT_KEY.test(key) || !amount || /\s/.test(amount)) {
    throw bad(
      where,
      tag,
      "is not KEY:VALUE; use e.g. 'limit:nvidia.com/gpu:1' or 'limit:memory:4Gi'"
    );
  }
  const field = limitField(key);
  if (field !== null) {
    const parsedValue = parsed(field, amount, tag, where);
    const stored = field === 'gpu' ? parsedValue : amount;
    put(result, field, { value: stored, key: String(parsedValue), tag }, where);
  }
  const old = result.limits.get(key);
  if (old !== undefined && old[0] !== amount) {
    throw bad(where, tag, `conflicts with tag ${pyRepr(old[1])} on the same cell; keep one`);
  }
  if (old === undefined) {
    result.limits.set(key, [amount, tag]);
  }
}

function valueFits(prefix: string, value: string): boolean {
  if (['step', 'block', 'after', 'prev'].includes(prefix)) {
    return STEP_NAME.test(value);
  }
  if (prefix === 'image') {
    return !!value && !/\s/.test(value);
  }
  if (prefix === 'limit') {
    const at = value.lastIndexOf(':');
    return at >= 0 && LIMIT_KEY.test(value.slice(0, at)) && !!value.slice(at + 1);
  }
  if (prefix in PARSERS) {
    try {
      PARSERS[prefix](value, prefix);
      return true;
    } catch {
      return false;
    }
  }
  return false;
}

function checkTypoPrefix(tag: string, prefix: string, value: string, where: string): void {
  const lowered = prefix.trim().toLowerCase();
  if (lowered in BARE_TAGS) {
    throw bad(
      where,
      tag,
      `is not a jupyter-ext tag; did you mean ${pyRepr(lowered)}? (it takes no value)`
    );
  }
  const candidates = lowered in PREFIX_TAGS ? [lowered] : [];
  if (lowered in SYNONYMS && SYNONYMS[lowered] in PREFIX_TAGS) {
    candidates.push(SYNONYMS[lowered]);
  }
  candidates.push(...closeMatches(lowered, Object.keys(PREFIX_TAGS), 3, TYPO_CUTOFF_PREFIX));
  for (const candidate of candidates) {
    if (valueFits(candidate, value)) {
      throw bad(where, tag, `is not a jupyter-ext tag; did you mean '${candidate}:${value}'?`);
    }
  }
}

function checkTypoBare(tag: string, where: string): void {
  const lowered = tag.trim().toLowerCase();
  if (lowered in BARE_TAGS) {
    throw bad(
      where,
      tag,
      `is not a jupyter-ext tag; did you mean ${pyRepr(lowered)}? (tags are lower case)`
    );
  }
  if (lowered in PREFIX_TAGS) {
    throw bad(where, tag, `needs a value, e.g. '${lowered}:${PREFIX_TAGS[lowered]}'`);
  }
  const synonym = SYNONYMS[lowered];
  if (synonym !== undefined && synonym in BARE_TAGS) {
    throw bad(where, tag, `is not a jupyter-ext tag; did you mean ${pyRepr(synonym)}?`);
  }
  const bare = Object.keys(BARE_TAGS).filter(t => t !== 'injected-parameters');
  const close = closeMatches(lowered, bare, 1, TYPO_CUTOFF_BARE);
  if (close.length) {
    throw bad(where, tag, `is not a jupyter-ext tag; did you mean ${pyRepr(close[0])}?`);
  }
}

function one(
  tag: string,
  where: string,
  result: ICellTags,
  roles: Map<string, string>,
  steps: Map<string, string>
): void {
  if (tag in BARE_TAGS) {
    const kind = BARE_TAGS[tag];
    if (kind === 'metrics') {
      result.metrics = true;
    } else if (!roles.has(kind)) {
      roles.set(kind, tag);
    }
    return;
  }
  const colon = tag.indexOf(':');
  if (colon < 0) {
    if (tag in PREFIX_TAGS) {
      throw bad(where, tag, `needs a value, e.g. '${tag}:${PREFIX_TAGS[tag]}'`);
    }
    checkTypoBare(tag, where);
    result.ignored.push(tag);
    return;
  }
  const prefix = tag.slice(0, colon);
  const value = tag.slice(colon + 1);
  if (!(prefix in PREFIX_TAGS)) {
    checkTypoPrefix(tag, prefix, value, where);
    result.ignored.push(tag);
    return;
  }
  if (prefix === 'step' || prefix === 'block') {
    if (value === '') {
      result.ignored.push(tag); // Kale can leave an empty `block:` behind
      return;
    }
    const name = stepName(value, tag, where);
    if (!steps.has(name)) {
      steps.set(name, tag);
    }
  } else if (prefix === 'after' || prefix === 'prev') {
    const name = stepName(value, tag, where);
    if (!result.after.has(name)) {
      result.after.set(name, tag);
    }
  } else if (prefix === 'limit') {
    applyLimit(tag, value, where, result);
  } else if (prefix === 'annotation' || prefix === 'label') {
    result.ignored.push(tag);
  } else {
    setting(prefix as SettingName, value, tag, where, result);
  }
}

function settleRole(
  result: ICellTags,
  roles: Map<string, string>,
  steps: Map<string, string>,
  problems: IProblem[]
): void {
  const cell = result.cell;
  const problem = (message: string, tag: string | null): IProblem => ({
    message,
    cell,
    step: null,
    tag
  });
  if (steps.size > 1) {
    const listed = [...steps.values()].map(t => pyRepr(t)).join(', ');
    problems.push(
      problem(
        `${cellLabel(cell)}: tags ${listed} put the cell in ${steps.size} steps; a cell belongs to one step`,
        [...steps.values()][0]
      )
    );
  }
  if (steps.size) {
    const [name, tag] = [...steps.entries()][0];
    result.step = name;
    if (!roles.has('step')) {
      roles.set('step', tag);
    }
  }
  for (const winner of ['skip', 'injected'] as Role[]) {
    if (roles.has(winner)) {
      result.role = winner;
      result.roleTag = roles.get(winner)!;
      result.step = null;
      return;
    }
  }
  if (roles.size > 1) {
    const listed = [...roles.values()].map(t => pyRepr(t)).join(' and ');
    problems.push(
      problem(
        `${cellLabel(cell)}: tags ${listed} give the cell two roles; keep one (split the cell if it does both)`,
        [...roles.values()][0]
      )
    );
  }
  if (roles.size) {
    const [role, tag] = [...roles.entries()][0];
    result.role = role as Role;
    result.roleTag = tag;
    if (role !== 'step') {
      result.step = null;
    }
  }
}

/** Parse the tags of code cell number `cell`, collecting every problem (as tags.collect_tags). */
export function collectTags(tags: unknown, cell: number): [ICellTags, IProblem[]] {
  const result: ICellTags = {
    cell,
    role: null,
    step: null,
    metrics: false,
    after: new Map(),
    settings: new Map(),
    limits: new Map(),
    ignored: [],
    roleTag: null
  };
  const problems: IProblem[] = [];
  if (tags === null || tags === undefined) {
    return [result, problems];
  }
  if (!Array.isArray(tags)) {
    const type = typeof tags === 'string' ? 'str' : typeof tags === 'number' ? 'int' : 'dict';
    problems.push({
      message: `${cellLabel(cell)}: metadata 'tags' must be a list of strings, got ${type}`,
      cell,
      step: null,
      tag: null
    });
    return [result, problems];
  }
  const roles = new Map<string, string>();
  const steps = new Map<string, string>();
  for (const tag of tags) {
    if (typeof tag !== 'string') {
      const shown = pyRepr(tag);
      problems.push({
        message: `${cellLabel(cell)}: tag ${shown} is not text; cell tags are strings`,
        cell,
        step: null,
        tag: shown
      });
      continue;
    }
    try {
      one(tag, cellLabel(cell), result, roles, steps);
    } catch (err) {
      problems.push({ message: (err as Error).message, cell, step: null, tag });
    }
  }
  settleRole(result, roles, steps, problems);
  return [result, problems];
}

/** Parse one cell's tags; throw TagError listing every problem (as tags.parse_tags). */
export function parseTags(tags: unknown, cell: number): ICellTags {
  const [result, problems] = collectTags(tags, cell);
  if (problems.length === 1) {
    throw Object.assign(new TagError(problems[0].message), { problems });
  }
  if (problems.length > 1) {
    const lines = problems.map(p => `  - ${p.message}`).join('\n');
    throw Object.assign(
      new TagError(`${cellLabel(cell)} has ${problems.length} problems:\n${lines}`),
      {
        problems
      }
    );
  }
  return result;
}

// -- the whole notebook: which cell belongs to which step (plan.py's rules) ------------------------------

/** One notebook cell as the model needs it. */
export interface INotebookCell {
  type: string; // 'code' | 'markdown' | 'raw'
  tags: unknown;
}

export interface IStepInfo {
  name: string;
  /** The first cell that opens the step (tagged step:/block:). */
  firstCell: number;
  /** Cells that carry the step:/block: tag of this step. */
  openers: number[];
  /** Every code cell of the step. */
  cells: number[];
  after: string[];
  /** gpu/memory/cpu/image/timeout/retries as the tags wrote them. */
  settings: Partial<Record<SettingName, string>>;
  limits: { [key: string]: string };
}

export interface ICellInfo {
  index: number;
  /** What the cell is: a role of its own, or the step/block it continues. */
  role: Role | null;
  /** The step this cell belongs to (null for prelude/parameters/skipped cells). */
  step: string | null;
  /** Whether the cell carries the step:/block: tag of `step`. */
  opens: boolean;
  problems: IProblem[];
  tags: ICellTags | null;
}

export interface INotebookSteps {
  /** No step tags: the notebook runs as one step, `main`. */
  single: boolean;
  steps: Map<string, IStepInfo>;
  cells: ICellInfo[];
  problems: IProblem[];
}

/** The raw text of a tag's value (timeout/retries keep what the user wrote). */
function rawSetting(tags: ICellTags, name: SettingName): string | undefined {
  const s = tags.settings.get(name);
  if (!s) {
    return undefined;
  }
  return s.tag.startsWith('limit:') ? String(s.value) : s.tag.slice(s.tag.indexOf(':') + 1).trim();
}

/** Read a whole notebook's tags the way the planner does (without the variable analysis). */
export function analyzeNotebook(cells: readonly INotebookCell[]): INotebookSteps {
  const problems: IProblem[] = [];
  const info: ICellInfo[] = cells.map((cell, index) => {
    if (cell.type !== 'code') {
      return { index, role: null, step: null, opens: false, problems: [], tags: null };
    }
    const [tags, found] = collectTags(cell.tags, index);
    problems.push(...found);
    return { index, role: tags.role, step: null, opens: false, problems: found, tags };
  });
  const code = info.filter(c => c.tags !== null);
  const single = !code.some(c => c.role === 'step');
  const steps = new Map<string, IStepInfo>();
  const stepOf = (name: string, index: number): IStepInfo => {
    let step = steps.get(name);
    if (!step) {
      step = {
        name,
        firstCell: index,
        openers: [],
        cells: [],
        after: [],
        settings: {},
        limits: {}
      };
      steps.set(name, step);
    }
    return step;
  };
  const absorb = (step: IStepInfo, c: ICellInfo) => {
    const tags = c.tags!;
    for (const name of tags.after.keys()) {
      if (!step.after.includes(name)) {
        step.after.push(name);
      }
    }
    for (const name of tags.settings.keys()) {
      const raw = rawSetting(tags, name);
      if (step.settings[name] === undefined && raw !== undefined) {
        step.settings[name] = raw;
      }
    }
    for (const [key, [value]] of tags.limits) {
      if (step.limits[key] === undefined) {
        step.limits[key] = value;
      }
    }
    step.cells.push(c.index);
    c.step = step.name;
  };
  if (single) {
    for (const c of code) {
      if (c.role === null) {
        absorb(stepOf('main', c.index), c);
      }
    }
  } else {
    let current: string | null = null; // the step untagged cells join (null: none or a role block)
    let started = false;
    let lastStep: string | null = null;
    for (const c of code) {
      const tags = c.tags!;
      if (c.role === 'skip' || c.role === 'injected') {
        continue;
      }
      if (c.role === 'imports' || c.role === 'functions' || c.role === 'parameters') {
        current = null;
        started = true;
        continue;
      }
      if (c.role === 'step' && tags.step !== null) {
        current = tags.step;
        lastStep = tags.step;
        started = true;
        const step = stepOf(tags.step, c.index);
        step.openers.push(c.index);
        c.opens = true;
      } else if (tags.metrics && lastStep !== null) {
        current = lastStep;
      }
      if (current !== null) {
        absorb(steps.get(current)!, c);
      } else if (!started) {
        continue; // before the first tagged cell: belongs to no step, as in Kale
      }
    }
  }
  const known = [...steps.keys()];
  for (const step of steps.values()) {
    for (const name of step.after) {
      if (!steps.has(name)) {
        const cell = step.cells.find(i => info[i].tags?.after.has(name)) ?? step.firstCell;
        const tag = info[cell].tags?.after.get(name) ?? `after:${name}`;
        const problem = {
          message: `${cellLabel(cell)}: tag ${pyRepr(tag)} names no step${suggest(name, known)}`,
          cell,
          step: step.name,
          tag
        };
        problems.push(problem);
        info[cell].problems.push(problem);
      }
    }
  }
  const cycle = findCycle(steps);
  if (cycle) {
    const first = steps.get(cycle[0])!;
    const problem = {
      message: `${cellLabel(first.firstCell)}: steps ${cycle.map(n => pyRepr(n)).join(' -> ')} form a cycle, so none of them can start`,
      cell: first.firstCell,
      step: first.name,
      tag: null
    };
    problems.push(problem);
    info[first.firstCell].problems.push(problem);
  }
  return { single, steps, cells: info, problems };
}

/** A cycle of after-edges in run order (first name repeated at the end), or null. */
export function findCycle(steps: Map<string, Pick<IStepInfo, 'after'>>): string[] | null {
  const state = new Map<string, number>();
  const path: string[] = [];
  let found: string[] | null = null;
  const visit = (name: string) => {
    state.set(name, 1);
    path.push(name);
    for (const parent of steps.get(name)!.after) {
      if (found || !steps.has(parent)) {
        continue;
      }
      if (state.get(parent) === 1) {
        const loop = path.slice(path.indexOf(parent)).reverse();
        found = [...loop, loop[0]];
      } else if (!state.has(parent)) {
        visit(parent);
      }
    }
    path.pop();
    state.set(name, 2);
  };
  for (const name of steps.keys()) {
    if (!state.has(name) && !found) {
      visit(name);
    }
  }
  return found;
}

// -- the step editor: a form, its validation, and the tags it writes -------------------------------------

export const FORM_FIELDS = [
  'name',
  'after',
  'gpu',
  'memory',
  'cpu',
  'image',
  'timeout',
  'retries'
] as const;
export type FormField = (typeof FORM_FIELDS)[number];
export type IStepForm = Record<FormField, string>;
export type FormErrors = Partial<Record<FormField, string>>;

/** The names in an `after` field: comma- or space-separated. */
export function splitNames(text: string): string[] {
  return [...new Set(text.split(/[\s,]+/).filter(Boolean))];
}

/** The form for the step that cell `index` opens (or an empty one for a new step there). */
export function formFor(nb: INotebookSteps, index: number): IStepForm {
  const cell = nb.cells[index];
  const step = cell?.opens && cell.step ? nb.steps.get(cell.step) : undefined;
  const s = step?.settings ?? {};
  return {
    name: step?.name ?? '',
    after: (step?.after ?? []).join(', '),
    gpu: s.gpu ?? '',
    memory: s.memory ?? '',
    cpu: s.cpu ?? '',
    image: s.image ?? '',
    timeout: s.timeout ?? '',
    retries: s.retries ?? ''
  };
}

const ROLE_WORDS: { [role: string]: string } = {
  parameters: 'the parameters cell',
  imports: 'an imports cell',
  functions: 'a functions cell',
  skip: 'switched off (skip)',
  injected: "papermill's injected-parameters cell"
};

/** What is wrong with the form, field by field (the rules of tags.py and plan.py). */
export function validateForm(nb: INotebookSteps, index: number, form: IStepForm): FormErrors {
  const errors: FormErrors = {};
  const cell = nb.cells[index];
  const current = cell?.opens ? cell.step : null;
  const name = form.name.trim();
  if (cell && cell.role && cell.role !== 'step') {
    errors.name =
      `${cellLabel(index)} is ${ROLE_WORDS[cell.role]} (tag ${pyRepr(cell.tags?.roleTag)}); ` +
      'remove that tag before making the cell a step';
  } else if (!name) {
    errors.name = 'name: give the step a name, e.g. train';
  } else if (!STEP_NAME.test(name)) {
    errors.name = `name: ${pyRepr(name)} is not a step name; use 1 to 63 letters, digits, '_', '-' or '.' (e.g. 'train')`;
  } else if (name !== current && nb.steps.has(name) && !nb.single) {
    errors.name = `name: step ${pyRepr(name)} already starts at ${cellLabel(nb.steps.get(name)!.firstCell)}; pick another name`;
  }
  const known = [...nb.steps.keys()].filter(n => n !== current && !(nb.single && n === 'main'));
  const after = splitNames(form.after);
  for (const parent of after) {
    if (!STEP_NAME.test(parent)) {
      errors.after = `after: ${pyRepr(parent)} is not a step name`;
    } else if (parent === name) {
      errors.after = `after: step ${pyRepr(name)} cannot run after itself`;
    } else if (!known.includes(parent)) {
      errors.after = `after: ${pyRepr(parent)} names no step${suggest(parent, known)}`;
    }
    if (errors.after) {
      break;
    }
  }
  if (!errors.after && !errors.name && after.length) {
    const graph = new Map<string, { after: string[] }>();
    for (const [n, s] of nb.steps) {
      if (n !== current) {
        graph.set(n, { after: s.after.map(a => (a === current ? name : a)) });
      }
    }
    graph.set(name, { after });
    const cycle = findCycle(graph);
    if (cycle) {
      errors.after = `after: steps ${cycle.map(n => pyRepr(n)).join(' -> ')} would form a cycle, so none of them could start`;
    }
  }
  for (const field of ['gpu', 'memory', 'cpu', 'timeout', 'retries'] as const) {
    const value = form[field].trim();
    try {
      if (value) {
        PARSERS[field](value, field);
      }
    } catch (err) {
      errors[field] = (err as Error).message;
    }
  }
  if (/\s/.test(form.image.trim())) {
    errors.image = `image: ${pyRepr(form.image.trim())} has spaces; give an image reference such as python:3.11-slim`;
  }
  return errors;
}

/** Whether `tag` is one the step editor owns (it rewrites them; every other tag is kept). */
function isStepSetting(tag: string): boolean {
  const colon = tag.indexOf(':');
  if (colon < 0) {
    return false;
  }
  const prefix = tag.slice(0, colon);
  if (
    prefix === 'after' ||
    prefix === 'prev' ||
    (SETTING_NAMES as readonly string[]).includes(prefix)
  ) {
    return true;
  }
  if (prefix === 'limit') {
    const value = tag.slice(colon + 1);
    return limitField(value.slice(0, value.lastIndexOf(':'))) !== null;
  }
  return false;
}

function isStepTag(tag: string): boolean {
  return tag.startsWith('step:') || tag.startsWith('block:');
}

function tagList(tags: unknown): string[] {
  return Array.isArray(tags) ? tags.filter((t): t is string => typeof t === 'string') : [];
}

/** The canonical tags of a step form, in order. */
export function canonicalTags(form: IStepForm): string[] {
  const out = [`step:${form.name.trim()}`, ...splitNames(form.after).map(a => `after:${a}`)];
  for (const field of SETTING_NAMES) {
    const value = form[field].replace(/\s+/g, '');
    if (value) {
      out.push(`${field}:${value}`);
    }
  }
  return out;
}

/**
 * Tags to write when the step editor saves `form` on cell `index`: `index -> new tags` for
 * each cell that changes. The cell gets our canonical tags first and keeps every other tag;
 * step settings on other cells of the same step move to it; a renamed step is renamed in
 * every `after:`/`prev:` and in the cells that reopen it.
 */
export function applyForm(
  cells: readonly INotebookCell[],
  index: number,
  form: IStepForm
): Map<number, string[]> {
  const nb = analyzeNotebook(cells);
  const cell = nb.cells[index];
  const old = cell?.opens ? cell.step : null;
  const name = form.name.trim();
  const changes = new Map<number, string[]>();
  const set = (i: number, tags: string[]) => {
    const before = tagList(cells[i].tags);
    if (before.length !== tags.length || before.some((t, k) => t !== tags[k])) {
      changes.set(i, tags);
    }
  };
  const kept = tagList(cells[index].tags).filter(t => !isStepTag(t) && !isStepSetting(t));
  set(index, [...canonicalTags(form), ...kept]);
  const members = old !== null ? (nb.steps.get(old)?.cells ?? []) : [];
  cells.forEach((c, i) => {
    if (i === index || c.type !== 'code') {
      return;
    }
    let tags = tagList(c.tags);
    const original = tags;
    if (members.includes(i)) {
      tags = tags.filter(t => !isStepSetting(t));
      if (old !== name) {
        tags = tags.map(t => (t === `step:${old}` || t === `block:${old}` ? `step:${name}` : t));
      }
    }
    if (old !== null && old !== name) {
      const renamed = tags.map(t =>
        t === `after:${old}` || t === `prev:${old}` ? `after:${name}` : t
      );
      tags = renamed.filter((t, k) => renamed.indexOf(t) === k || !t.startsWith('after:'));
    }
    if (tags !== original) {
      set(i, tags);
    }
  });
  return changes;
}

/**
 * Tags to write when "Remove step" is pressed on cell `index`: the cell loses its step tag and
 * step settings (it joins the block above again); when no other cell opens that step, the
 * `after:`/`prev:` tags naming it go too.
 */
export function removeStep(cells: readonly INotebookCell[], index: number): Map<number, string[]> {
  const nb = analyzeNotebook(cells);
  const cell = nb.cells[index];
  const changes = new Map<number, string[]>();
  if (!cell?.opens || !cell.step) {
    return changes;
  }
  const name = cell.step;
  const openers = nb.steps.get(name)?.openers ?? [];
  changes.set(
    index,
    tagList(cells[index].tags).filter(t => !isStepTag(t) && !isStepSetting(t))
  );
  if (openers.filter(i => i !== index).length === 0) {
    cells.forEach((c, i) => {
      if (i === index || c.type !== 'code') {
        return;
      }
      const tags = tagList(c.tags);
      const kept = tags.filter(t => t !== `after:${name}` && t !== `prev:${name}`);
      if (kept.length !== tags.length) {
        changes.set(i, kept);
      }
    });
  }
  return changes;
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
  if (!cell?.opens || !cell.step) {
    return '+ step';
  }
  const step = nb.steps.get(cell.step)!;
  const summary = resourceSummary(step.settings);
  return summary ? `${step.name} · ${summary}` : step.name;
}
