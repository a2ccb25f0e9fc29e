/**
 * A job's artifacts: the executed notebook and its HTML per step, then every file the steps
 * saved, with previews of images and downloads.
 *
 * Every byte is fetched through the API client (the server's auth: token header and XSRF
 * cookie, as every JupyterLab request), then shown or saved through an object URL.
 */

import { Widget } from '@lumino/widgets';
import { JupyterExtClient } from './client';
import { IArtifact } from './tokens';

/** Images larger than this are not previewed (they are still downloadable). */
export const PREVIEW_MAX_BYTES = 20 * 1024 * 1024;

/** What the view can ask its host to do with an executed notebook. */
export interface IArtifactActions {
  /** Show an executed notebook's HTML (in a sandboxed frame). */
  openHtml?: (label: string, html: string) => void;
  /** Open an executed notebook (e.g. as a copy beside the original). */
  openNotebook?: (step: string, name: string, content: unknown) => Promise<void>;
}

/** `1.5 MB`, `12 KB`, `800 B`. */
export function humanSize(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** Whether an artifact is a step's executed notebook (`executed.ipynb`, `train__executed.html`). */
export function executedKind(artifact: Pick<IArtifact, 'name' | 'step'>): 'ipynb' | 'html' | null {
  for (const kind of ['ipynb', 'html'] as const) {
    const file = `executed.${kind}`;
    if (artifact.name === file || artifact.name === `${artifact.step}__${file}`) {
      return kind;
    }
  }
  return null;
}

/** Whether an artifact is an image the runner kept from a cell's output (`cell3-output0.png`). */
export function isCellImage(artifact: Pick<IArtifact, 'name' | 'mime'>): boolean {
  return artifact.mime.startsWith('image/') && /(^|__)cell\d+-output\d+\.\w+$/.test(artifact.name);
}

/**
 * The artifacts to list, each once: a step that saved images of its own under
 * `artifact_path()` (a plot it also showed) does not list its cells' output images beside
 * them; those stay in the cells and the executed notebook. Answers the list and how many
 * cell images it left out.
 */
export function listed(artifacts: readonly IArtifact[]): {
  shown: IArtifact[];
  cellImages: IArtifact[];
} {
  const named = new Set(
    artifacts
      .filter(a => a.mime.startsWith('image/') && !isCellImage(a) && !executedKind(a))
      .map(a => a.step)
  );
  const cellImages = artifacts.filter(a => isCellImage(a) && named.has(a.step));
  return { shown: artifacts.filter(a => !cellImages.includes(a)), cellImages };
}

/**
 * An executed step notebook as "Open a copy" saves it: its `after:`/`prev:` tags naming steps
 * that are not in the copy are dropped (they were satisfied in the job; kept, the step chip
 * would flag each as a problem).
 */
export function copyForOpening(content: any): any {
  const cells: any[] = Array.isArray(content?.cells) ? content.cells : [];
  const tagsOf = (cell: any): string[] =>
    Array.isArray(cell?.metadata?.tags)
      ? cell.metadata.tags.filter((t: any) => typeof t === 'string')
      : [];
  const steps = new Set<string>();
  for (const cell of cells) {
    for (const tag of tagsOf(cell)) {
      const m = /^(step|block):\s*(.+)$/.exec(tag);
      if (m) {
        steps.add(m[2].trim());
      }
    }
  }
  return {
    ...content,
    cells: cells.map(cell => {
      const tags = tagsOf(cell);
      const kept = tags.filter(tag => {
        const m = /^(after|prev):\s*(.+)$/.exec(tag);
        return !m || steps.has(m[2].trim());
      });
      if (kept.length === tags.length) {
        return cell;
      }
      return { ...cell, metadata: { ...cell.metadata, tags: kept } };
    })
  };
}

/** A blob's text (FileReader where `Blob.text` is missing, as in older engines). */
export function readText(blob: Blob): Promise<string> {
  if (typeof blob.text === 'function') {
    return blob.text();
  }
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsText(blob);
  });
}

/** Save a blob as a file through the browser's download. */
export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  link.style.display = 'none';
  document.body.appendChild(link);
  link.click();
  link.remove();
  // The download has started once click() returned; keep the URL a while for slow browsers.
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

export class ArtifactsView extends Widget {
  private artifacts: IArtifact[] = [];
  private shownKey = '';
  private error = '';
  private previews = new Map<string, string>();
  private pending: Promise<void> | null = null;
  /** A refresh asked for while one was in flight: it may miss what came since, so list again. */
  private again = false;

  constructor(
    private readonly client: JupyterExtClient,
    readonly jobId: string,
    private readonly actions: IArtifactActions = {}
  ) {
    super();
    this.addClass('jp-ext-Artifacts');
    this.render();
  }

  /** Artifacts shown now. */
  get shown(): readonly IArtifact[] {
    return this.artifacts;
  }

  /**
   * List the artifacts again. Calls while a request is in flight share one more request after
   * it, so an artifact stored meanwhile is not missed.
   */
  refresh(): Promise<void> {
    if (this.pending) {
      this.again = true;
      return this.pending;
    }
    this.pending = (async () => {
      do {
        this.again = false;
        await this.load();
      } while (this.again && !this.isDisposed);
    })().finally(() => {
      this.pending = null;
    });
    return this.pending;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    for (const url of this.previews.values()) {
      URL.revokeObjectURL(url);
    }
    this.previews.clear();
    super.dispose();
  }

  private async load(): Promise<void> {
    try {
      this.artifacts = await this.client.artifacts(this.jobId);
      this.error = '';
    } catch (error: any) {
      this.error = `Could not list the artifacts: ${String(error?.message ?? error)}`;
    }
    if (!this.isDisposed) {
      this.render();
    }
  }

  private render(): void {
    // Redraw only when something changed: a redraw would reload every preview.
    const key = JSON.stringify([this.artifacts, this.error]);
    if (key === this.shownKey) {
      return;
    }
    this.shownKey = key;
    const root = this.node;
    root.textContent = '';
    if (this.error) {
      const error = document.createElement('div');
      error.className = 'jp-ext-Artifacts-error';
      error.setAttribute('role', 'alert');
      error.textContent = this.error;
      root.appendChild(error);
    }
    const executed = this.renderExecuted();
    if (executed) {
      root.appendChild(executed);
    }
    if (this.artifacts.length === 0) {
      const empty = document.createElement('div');
      empty.className = 'jp-ext-Artifacts-empty';
      empty.textContent =
        'No artifacts yet. Files a step saves under jupyter_ext.artifact_path("name"), ' +
        'its image outputs and the executed notebook appear here.';
      root.appendChild(empty);
      return;
    }
    const { shown, cellImages } = listed(this.artifacts);
    const list = document.createElement('ul');
    list.className = 'jp-ext-Artifacts-list';
    for (const artifact of shown) {
      list.appendChild(this.renderArtifact(artifact));
    }
    root.appendChild(list);
    if (cellImages.length) {
      const note = document.createElement('div');
      note.className = 'jp-ext-Artifacts-note';
      note.dataset.testid = 'jupyter-ext-artifacts-cell-images';
      note.textContent =
        `${cellImages.length} image output${cellImages.length === 1 ? '' : 's'} of the cells ` +
        '(the plots above, as the cells showed them) are in the cells and the executed notebook.';
      root.appendChild(note);
    }
  }

  /** Per step: download the executed notebook, open a copy, view its HTML. */
  private renderExecuted(): HTMLElement | null {
    const steps = new Map<string, { ipynb?: IArtifact; html?: IArtifact }>();
    for (const artifact of this.artifacts) {
      const kind = executedKind(artifact);
      if (kind) {
        const entry = steps.get(artifact.step) ?? {};
        entry[kind] = artifact;
        steps.set(artifact.step, entry);
      }
    }
    if (steps.size === 0) {
      return null;
    }
    const box = document.createElement('div');
    box.className = 'jp-ext-Executed';
    const heading = document.createElement('h4');
    heading.textContent = 'Executed notebook';
    box.appendChild(heading);
    for (const [step, { ipynb, html }] of steps) {
      const row = document.createElement('div');
      row.className = 'jp-ext-Executed-row';
      row.dataset.step = step;
      if (ipynb?.name !== 'executed.ipynb' && html?.name !== 'executed.html') {
        const label = document.createElement('span');
        label.className = 'jp-ext-Executed-step';
        label.textContent = step;
        row.appendChild(label);
      }
      if (ipynb) {
        const link = this.downloadLink(ipynb, 'Download .ipynb');
        link.dataset.testid = 'jupyter-ext-executed-notebook';
        link.dataset.step = step;
        link.title = `Download the notebook as step ${step} ran it, with its outputs`;
        row.appendChild(link);
        const openNotebook = this.actions.openNotebook;
        if (openNotebook) {
          const open = this.button('Open a copy', async () => {
            const blob = await this.client.artifactBlob(this.jobId, ipynb.name);
            await openNotebook(step, ipynb.name, JSON.parse(await readText(blob)));
          });
          open.dataset.testid = 'jupyter-ext-executed-notebook-open';
          open.dataset.step = step;
          open.title = 'Save a copy of the executed notebook beside the original and open it';
          row.appendChild(open);
        }
      }
      if (html) {
        const openHtml = this.actions.openHtml;
        const link = openHtml
          ? this.button('View as HTML', async () => {
              const blob = await this.client.artifactBlob(this.jobId, html.name);
              openHtml(`${step}: executed`, await readText(blob));
            })
          : this.downloadLink(html, 'Download .html');
        link.dataset.testid = 'jupyter-ext-executed-html';
        link.dataset.step = step;
        row.appendChild(link);
      }
      box.appendChild(row);
    }
    return box;
  }

  private renderArtifact(artifact: IArtifact): HTMLElement {
    const item = document.createElement('li');
    item.className = 'jp-ext-Artifact';
    item.dataset.testid = 'jupyter-ext-artifact';
    item.dataset.name = artifact.name;
    const line = document.createElement('div');
    line.className = 'jp-ext-Artifact-line';
    const name = document.createElement('span');
    name.className = 'jp-ext-Artifact-name';
    name.textContent = artifact.name;
    name.title = `${artifact.name} (step ${artifact.step}, ${artifact.mime})`;
    line.appendChild(name);
    const size = document.createElement('span');
    size.className = 'jp-ext-Artifact-size';
    size.textContent = humanSize(artifact.size);
    line.appendChild(size);
    const link = this.downloadLink(artifact, 'Download');
    link.dataset.testid = 'jupyter-ext-artifact-download';
    link.setAttribute('aria-label', `Download ${artifact.name}`);
    line.appendChild(link);
    item.appendChild(line);
    if (artifact.mime.startsWith('image/') && artifact.size <= PREVIEW_MAX_BYTES) {
      const img = document.createElement('img');
      img.className = 'jp-ext-Artifact-preview';
      img.dataset.testid = 'jupyter-ext-artifact-preview';
      img.alt = `Preview of ${artifact.name}`;
      img.loading = 'lazy';
      // A click opens the preview large (the image's own size, up to the view's width).
      img.tabIndex = 0;
      img.setAttribute('role', 'button');
      img.setAttribute('aria-expanded', 'false');
      img.title = 'Click to enlarge';
      const toggle = () => {
        const large = item.classList.toggle('jp-mod-expanded');
        img.setAttribute('aria-expanded', String(large));
        img.title = large ? 'Click to make small again' : 'Click to enlarge';
      };
      img.onclick = toggle;
      img.onkeydown = (event: KeyboardEvent) => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          toggle();
        }
      };
      item.appendChild(img);
      void this.preview(artifact, img, item);
    }
    return item;
  }

  private async preview(artifact: IArtifact, img: HTMLImageElement, item: HTMLElement) {
    const key = `${artifact.name}:${artifact.size}`;
    try {
      let url = this.previews.get(key);
      if (!url) {
        url = URL.createObjectURL(await this.client.artifactBlob(this.jobId, artifact.name));
        if (this.isDisposed) {
          URL.revokeObjectURL(url);
          return;
        }
        this.previews.set(key, url);
      }
      img.src = url;
    } catch (error: any) {
      img.remove();
      const note = document.createElement('div');
      note.className = 'jp-ext-Artifacts-error';
      note.textContent = `No preview: ${String(error?.message ?? error)}`;
      item.appendChild(note);
    }
  }

  /**
   * A link to the artifact's URL (so "copy link" works) whose click downloads through the
   * client, so it works whatever the server's auth (a plain link would need a cookie).
   */
  private downloadLink(artifact: IArtifact, label: string): HTMLAnchorElement {
    const link = document.createElement('a');
    link.className = 'jp-ext-Artifact-download';
    link.href = this.client.artifactUrl(this.jobId, artifact.name);
    link.download = artifact.name;
    link.textContent = label;
    link.onclick = event => {
      event.preventDefault();
      void this.run(link, async () => {
        saveBlob(await this.client.artifactBlob(this.jobId, artifact.name), artifact.name);
      });
    };
    return link;
  }

  private button(label: string, action: () => Promise<void>): HTMLButtonElement {
    const el = document.createElement('button');
    el.type = 'button';
    el.className = 'jp-Button jp-mod-minimal jp-mod-styled';
    el.textContent = label;
    el.onclick = () => void this.run(el, action);
    return el;
  }

  /** Run an action of a link or button; a failure is said next to it. */
  private async run(el: HTMLElement, action: () => Promise<void>): Promise<void> {
    el.setAttribute('aria-busy', 'true');
    const previous = el.nextElementSibling;
    if (previous?.classList.contains('jp-ext-Artifacts-error')) {
      previous.remove();
    }
    try {
      await action();
    } catch (error: any) {
      const note = document.createElement('span');
      note.className = 'jp-ext-Artifacts-error';
      note.setAttribute('role', 'alert');
      note.textContent = String(error?.message ?? error);
      el.after(note);
    } finally {
      el.removeAttribute('aria-busy');
    }
  }
}
