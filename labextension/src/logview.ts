/**
 * A step's log: a line model, and a virtualised view that keeps only the rows in sight (plus
 * a few) in the DOM, so a log of 100,000 lines scrolls as smoothly as one of ten.
 *
 * Rows have one fixed height; the scroll container holds a spacer as tall as all the lines,
 * and a window of rows placed where the user scrolled to.
 */

import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

/** Where a line came from: the step's stdout, its stderr, or us (status lines). */
export type LineKind = 'stdout' | 'stderr' | 'info';

/** Longest line shown; the rest of a longer one is cut (the artifacts keep everything). */
export const MAX_LINE_CHARS = 10000;

// Colour and cursor escapes (tqdm, logging handlers, tracebacks) read as noise in plain text.
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*(\x07|\x1b\\)/g;

export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

/** The lines of one log, appended to as events arrive. */
export class LogModel {
  private lines: string[] = [];
  private kinds: LineKind[] = [];
  /** Whether the last line still waits for its newline. */
  private open = false;
  /** Whether the last line ended in a carriage return: what comes next overwrites it. */
  private returned = false;
  private droppedCount = 0;
  private revisionCount = 0;
  private readonly changedSignal = new Signal<this, void>(this);

  /** @param maxLines oldest lines are let go beyond this many, to bound memory */
  constructor(readonly maxLines = 1_000_000) {}

  /** Emitted after every append. */
  get changed(): ISignal<this, void> {
    return this.changedSignal;
  }

  /** Lines held now. */
  get length(): number {
    return this.lines.length;
  }

  /** Lines let go from the top because the log grew past `maxLines`. */
  get dropped(): number {
    return this.droppedCount;
  }

  /** Counts appends: it moves when the last line grew in place, though `length` did not. */
  get revision(): number {
    return this.revisionCount;
  }

  line(index: number): string {
    return this.lines[index];
  }

  kind(index: number): LineKind {
    return this.kinds[index];
  }

  /** The whole log as text (for a download). */
  toString(): string {
    return this.lines.join('\n');
  }

  /**
   * Append output as it was printed: text without a final newline continues on the next
   * append, and a carriage return starts its line over (progress bars redraw in place).
   */
  append(text: string, kind: LineKind = 'stdout'): void {
    if (!text) {
      return;
    }
    const parts = stripAnsi(text).split('\n');
    parts.forEach((part, i) => {
      const last = i === parts.length - 1;
      if (last && part === '') {
        this.open = false; // the text ended with a newline
        return;
      }
      if (i === 0 && this.open && this.kinds[this.kinds.length - 1] === kind) {
        const n = this.lines.length - 1;
        this.lines[n] = overwrite(this.lines[n], this.returned ? `\r${part}` : part);
      } else {
        this.lines.push(overwrite('', part));
        this.kinds.push(kind);
      }
      this.open = last;
      this.returned = last && part.endsWith('\r');
    });
    this.trim();
    this.revisionCount++;
    this.changedSignal.emit();
  }

  /** A line of our own (e.g. `── step started ──`), always on a line of its own. */
  note(text: string): void {
    this.open = false;
    this.returned = false;
    this.append(`${text}\n`, 'info');
  }

  private trim(): void {
    // Drop in batches: shifting a big array line by line would cost O(n) per append.
    const excess = this.lines.length - this.maxLines;
    if (excess > 0) {
      const drop = Math.max(excess, Math.ceil(this.maxLines / 10));
      this.lines.splice(0, drop);
      this.kinds.splice(0, drop);
      this.droppedCount += drop;
    }
  }
}

/** `line` after printing `part`: a carriage return moves back to the start of the line. */
function overwrite(line: string, part: string): string {
  let result = line;
  const pieces = part.split('\r');
  pieces.forEach((piece, i) => {
    if (i > 0 && piece === '') {
      return; // '\r' at the end (or '\r\n'): keep what is shown until something replaces it
    }
    result = i === 0 ? result + piece : piece + result.slice(piece.length);
  });
  return result.length > MAX_LINE_CHARS ? result.slice(0, MAX_LINE_CHARS) + ' …' : result;
}

/** The lines to render: those in the viewport, plus `overscan` above and below. */
export function visibleRange(
  total: number,
  scrollTop: number,
  viewportHeight: number,
  rowHeight: number,
  overscan = 20
): { start: number; end: number } {
  const first = Math.floor(Math.max(0, scrollTop) / rowHeight);
  const count = Math.ceil(Math.max(0, viewportHeight) / rowHeight) + 1;
  const start = Math.max(0, Math.min(first, total) - overscan);
  const end = Math.min(total, first + count + overscan);
  return { start, end: Math.max(start, end) };
}

export interface ILogViewOptions {
  /** Height of a row in pixels; must match the CSS (`--jp-ext-log-row-height`). */
  rowHeight?: number;
  overscan?: number;
  /** Used when the browser cannot say how tall the view is (not laid out yet, or jsdom). */
  fallbackHeight?: number;
  /** The view grows with its log up to this many pixels, then scrolls. */
  maxHeight?: number;
}

/** The virtualised view of a LogModel. */
export class LogView extends Widget {
  readonly rowHeight: number;
  private readonly overscan: number;
  private readonly fallbackHeight: number;
  private readonly maxHeight: number;
  private readonly spacer = document.createElement('div');
  private readonly rows = document.createElement('div');
  private readonly banner = document.createElement('div');
  private frame = 0;
  /** Follow the end of the log while the user has not scrolled up. */
  private follow = true;
  /** Where we last scrolled to ourselves (to the end), until its scroll event came. */
  private scrolledTo: number | null = null;
  private rendered = { start: 0, end: 0, revision: -1 };

  constructor(
    readonly model: LogModel,
    options: ILogViewOptions = {}
  ) {
    super();
    this.rowHeight = options.rowHeight ?? 18;
    this.overscan = options.overscan ?? 20;
    this.fallbackHeight = options.fallbackHeight ?? 240;
    this.maxHeight = options.maxHeight ?? 300;
    this.addClass('jp-ext-LogView');
    this.node.tabIndex = 0; // scrollable by keyboard
    this.node.setAttribute('role', 'log');
    this.node.style.setProperty('--jp-ext-log-row-height', `${this.rowHeight}px`);
    this.banner.className = 'jp-ext-LogView-empty';
    this.banner.textContent = 'No output yet.';
    this.spacer.className = 'jp-ext-LogView-spacer';
    this.rows.className = 'jp-ext-LogView-rows';
    this.spacer.appendChild(this.rows);
    this.node.appendChild(this.banner);
    this.node.appendChild(this.spacer);
    this.node.addEventListener('scroll', this.onScroll);
    model.changed.connect(this.schedule, this);
    this.update();
  }

  /** What the view says while the log is empty. */
  set emptyText(text: string) {
    this.banner.textContent = text;
  }

  /** Rows in the DOM now (O(visible), whatever the log's length). */
  get renderedRows(): number {
    return this.rows.childElementCount;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.node.removeEventListener('scroll', this.onScroll);
    this.model.changed.disconnect(this.schedule, this);
    if (this.frame) {
      cancelAnimationFrame(this.frame);
    }
    super.dispose();
  }

  /** Scroll so that line `index` is in view. */
  scrollToLine(index: number): void {
    this.node.scrollTop = index * this.rowHeight;
    this.follow = false;
    this.render();
  }

  protected onAfterAttach(): void {
    this.render();
  }

  protected onAfterShow(): void {
    this.render();
  }

  protected onResize(): void {
    this.render();
  }

  protected onUpdateRequest(): void {
    this.render();
  }

  /** Height of all the rows (what the spacer is set to). */
  private contentHeight(): number {
    return (this.model.length + (this.model.dropped ? 1 : 0)) * this.rowHeight;
  }

  private onScroll = (): void => {
    // Our own scroll to the end fires this later, maybe after more lines came: not the user.
    if (this.scrolledTo === null || Math.abs(this.node.scrollTop - this.scrolledTo) > 1) {
      const bottom = this.contentHeight() - this.viewport();
      this.follow = this.node.scrollTop >= bottom - this.rowHeight;
    }
    this.scrolledTo = null;
    this.schedule();
  };

  private schedule(): void {
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.render();
      });
    }
  }

  private viewport(): number {
    return this.node.clientHeight || this.fallbackHeight;
  }

  /** Draw the rows in sight now. */
  render(): void {
    if (this.isDisposed) {
      return;
    }
    const model = this.model;
    const total = model.length;
    this.banner.hidden = total > 0 || model.dropped > 0;
    this.spacer.style.height = `${this.contentHeight()}px`;
    // As tall as its lines (two rows at least), up to maxHeight; then it scrolls.
    const height = Math.min(this.maxHeight, Math.max(2 * this.rowHeight, this.contentHeight()));
    this.node.style.height = `${height + 2}px`;
    if (this.follow) {
      const end = Math.max(0, this.contentHeight() - this.viewport());
      if (Math.abs(this.node.scrollTop - end) > 1) {
        this.node.scrollTop = end;
        this.scrolledTo = this.node.scrollTop;
      }
    }
    const shift = model.dropped ? 1 : 0; // a first row says how many lines were let go
    const { start, end } = visibleRange(
      total + shift,
      this.node.scrollTop,
      this.viewport(),
      this.rowHeight,
      this.overscan
    );
    const last = this.rendered;
    if (last.start === start && last.end === end && last.revision === model.revision) {
      return;
    }
    this.rendered = { start, end, revision: model.revision };
    this.rows.style.transform = `translateY(${start * this.rowHeight}px)`;
    // Reuse the row elements already there; add or remove only the difference.
    const needed = end - start;
    while (this.rows.childElementCount > needed) {
      this.rows.lastElementChild!.remove();
    }
    while (this.rows.childElementCount < needed) {
      const row = document.createElement('div');
      row.className = 'jp-ext-LogView-row';
      this.rows.appendChild(row);
    }
    for (let i = start; i < end; i++) {
      const row = this.rows.children[i - start] as HTMLElement;
      if (shift && i === 0) {
        row.textContent = `… ${model.dropped} earlier lines not shown`;
        row.dataset.kind = 'info';
        continue;
      }
      row.textContent = model.line(i - shift);
      row.dataset.kind = model.kind(i - shift);
    }
  }
}
