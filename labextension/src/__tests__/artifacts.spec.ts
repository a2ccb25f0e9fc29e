import { ArtifactsView, copyForOpening, executedKind, humanSize, listed } from '../artifacts';
import { FakeApi, job, settle, until } from './jobfakes';

const created: Blob[] = [];
beforeAll(() => {
  // jsdom has no object URLs.
  (URL as any).createObjectURL = (blob: Blob) => {
    created.push(blob);
    return `blob:test/${created.length}`;
  };
  (URL as any).revokeObjectURL = () => undefined;
});

function api() {
  const fake = new FakeApi();
  fake.add(job({ id: 'j1', status: 'succeeded' }));
  fake.artifactList.set('j1', [
    { name: 'executed.ipynb', step: 'main', size: 2048, mime: 'application/x-ipynb+json' },
    { name: 'executed.html', step: 'main', size: 300_000, mime: 'text/html' },
    { name: 'cell3-output0.png', step: 'main', size: 1200, mime: 'image/png' },
    { name: 'model.pkl', step: 'main', size: 5_000_000, mime: 'application/octet-stream' }
  ]);
  fake.blobs.set('cell3-output0.png', new Blob(['png'], { type: 'image/png' }));
  fake.blobs.set('executed.html', new Blob(['<h1>run</h1>'], { type: 'text/html' }));
  fake.blobs.set('executed.ipynb', new Blob(['{"cells": []}']));
  fake.blobs.set('model.pkl', new Blob(['bytes']));
  return fake;
}

describe('ArtifactsView', () => {
  it('lists artifacts with sizes, previews images through object URLs, and links downloads', async () => {
    const fake = api();
    const view = new ArtifactsView(fake.client, 'j1');
    await view.refresh();
    await settle();
    const items = Array.from(
      view.node.querySelectorAll<HTMLElement>('[data-testid="jupyter-ext-artifact"]')
    );
    expect(items.map(i => i.dataset.name)).toEqual([
      'executed.ipynb',
      'executed.html',
      'cell3-output0.png',
      'model.pkl'
    ]);
    expect(items[3].querySelector('.jp-ext-Artifact-size')!.textContent).toBe('4.8 MB');
    const previews = view.node.querySelectorAll<HTMLImageElement>(
      '[data-testid="jupyter-ext-artifact-preview"]'
    );
    expect(previews).toHaveLength(1); // only the image
    expect(previews[0].getAttribute('src')).toMatch(/^blob:test\//);
    expect(fake.fetchedBlobs).toEqual(['cell3-output0.png']);
    const link = items[3].querySelector<HTMLAnchorElement>(
      '[data-testid="jupyter-ext-artifact-download"]'
    )!;
    expect(link.getAttribute('href')).toBe('http://host/api/jobs/j1/artifacts/model.pkl');
    expect(link.download).toBe('model.pkl');
    // A click downloads through the client (with the server's auth), not the bare link.
    const clicks: string[] = [];
    const realClick = HTMLAnchorElement.prototype.click;
    HTMLAnchorElement.prototype.click = function (this: HTMLAnchorElement) {
      clicks.push(`${this.download} ${this.href}`);
    };
    try {
      link.dispatchEvent(new MouseEvent('click', { cancelable: true }));
      await settle();
    } finally {
      HTMLAnchorElement.prototype.click = realClick;
    }
    expect(fake.fetchedBlobs).toContain('model.pkl');
    expect(clicks).toEqual([expect.stringMatching(/^model\.pkl blob:test\/\d+$/)]);
    // Listing again with nothing new keeps the previews (no refetch, no flicker).
    await view.refresh();
    expect(view.node.querySelector('[data-testid="jupyter-ext-artifact-preview"]')).toBe(
      previews[0]
    );
    view.dispose();
  });

  it('offers the executed notebook, a copy to open, and its HTML in a sandboxed view', async () => {
    const fake = api();
    const opened: [string, string][] = [];
    const notebooks: [string, string, unknown][] = [];
    const view = new ArtifactsView(fake.client, 'j1', {
      openHtml: (label, html) => opened.push([label, html]),
      openNotebook: async (step, name, content) => {
        notebooks.push([step, name, content]);
      }
    });
    await view.refresh();
    const notebook = view.node.querySelector<HTMLAnchorElement>(
      '[data-testid="jupyter-ext-executed-notebook"]'
    )!;
    expect(notebook.getAttribute('href')).toBe('http://host/api/jobs/j1/artifacts/executed.ipynb');
    (view.node.querySelector('[data-testid="jupyter-ext-executed-html"]') as HTMLElement).click();
    (
      view.node.querySelector('[data-testid="jupyter-ext-executed-notebook-open"]') as HTMLElement
    ).click();
    await until(() => opened.length > 0 && notebooks.length > 0);
    expect(opened).toEqual([['main: executed', '<h1>run</h1>']]);
    expect(notebooks).toEqual([['main', 'executed.ipynb', { cells: [] }]]);
    view.dispose();
  });

  it('says why an artifact could not be fetched, and when there are none', async () => {
    const fake = api();
    fake.blobs.delete('cell3-output0.png');
    fake.blobs.delete('executed.html');
    const view = new ArtifactsView(fake.client, 'j1', { openHtml: () => undefined });
    await view.refresh();
    await settle();
    expect(view.node.querySelector('[data-testid="jupyter-ext-artifact-preview"]')).toBeNull();
    expect(view.node.textContent).toContain('No preview: no artifact cell3-output0.png');
    (view.node.querySelector('[data-testid="jupyter-ext-executed-html"]') as HTMLElement).click();
    await settle();
    expect(view.node.querySelector('[role="alert"]')!.textContent).toBe(
      'no artifact executed.html'
    );
    const empty = new ArtifactsView(new FakeApi().client, 'none');
    await empty.refresh();
    expect(empty.node.textContent).toContain('No artifacts yet');
    // It names the helper notebooks call, not an environment variable.
    expect(empty.node.textContent).toContain('jupyter_ext.artifact_path("name")');
    expect(empty.node.textContent).not.toContain('$JUPYTER_EXT');
  });

  it('opens an image preview large on click, and small again', async () => {
    const view = new ArtifactsView(api().client, 'j1');
    await view.refresh();
    await settle();
    const img = view.node.querySelector<HTMLImageElement>(
      '[data-testid="jupyter-ext-artifact-preview"]'
    )!;
    const item = img.closest('[data-testid="jupyter-ext-artifact"]')!;
    expect(item.classList.contains('jp-mod-expanded')).toBe(false);
    img.click();
    expect(item.classList.contains('jp-mod-expanded')).toBe(true);
    expect(img.getAttribute('aria-expanded')).toBe('true');
    img.click();
    expect(item.classList.contains('jp-mod-expanded')).toBe(false);
  });

  it('lists a plot once: a step’s saved image, not its cell output image beside it', async () => {
    const fake = new FakeApi();
    fake.add(job({ id: 'j2', status: 'succeeded' }));
    const png = 'image/png';
    fake.artifactList.set('j2', [
      { name: 'plot__cell3-output0.png', step: 'plot', size: 900, mime: png },
      { name: 'plot__plot.png', step: 'plot', size: 1000, mime: png },
      { name: 'slow__cell2-output0.png', step: 'slow', size: 800, mime: png }
    ]);
    const view = new ArtifactsView(fake.client, 'j2');
    await view.refresh();
    await settle();
    const names = Array.from(
      view.node.querySelectorAll<HTMLElement>('[data-testid="jupyter-ext-artifact"]')
    ).map(i => i.dataset.name);
    // Step slow saved no image of its own: its cell's image is the only copy, so it is listed.
    expect(names).toEqual(['plot__plot.png', 'slow__cell2-output0.png']);
    expect(
      view.node.querySelector('[data-testid="jupyter-ext-artifacts-cell-images"]')!.textContent
    ).toMatch(/^1 image output of the cells/);
    expect(listed([]).shown).toEqual([]);
  });

  it('opens a copy of a step notebook without after: tags naming steps it does not hold', () => {
    const content = {
      cells: [
        { cell_type: 'code', metadata: { tags: ['step:plot', 'after:slow', 'cpu:1'] }, source: '' },
        {
          cell_type: 'code',
          metadata: { tags: ['step:report', 'prev:plot', 'prev:slow'] },
          source: ''
        },
        { cell_type: 'markdown', metadata: {}, source: '' }
      ],
      metadata: {}
    };
    const copy = copyForOpening(content);
    expect(copy.cells.map((c: any) => c.metadata.tags)).toEqual([
      ['step:plot', 'cpu:1'],
      ['step:report', 'prev:plot'],
      undefined
    ]);
    expect(content.cells[0].metadata.tags).toContain('after:slow'); // the original is untouched
  });

  it('lists once more after a request in flight, so what came meanwhile is not missed', async () => {
    const fake = api();
    const view = new ArtifactsView(fake.client, 'j1');
    const first = view.refresh();
    fake.artifactList
      .get('j1')!
      .push({ name: 'late.txt', step: 'main', size: 1, mime: 'text/plain' });
    const second = view.refresh();
    void view.refresh();
    await first;
    await second;
    expect(fake.fetches).toEqual(['artifacts j1', 'artifacts j1']);
    expect(view.shown.map(a => a.name)).toContain('late.txt');
    await view.refresh();
    expect(fake.fetches).toHaveLength(3);
    view.dispose();
  });

  it('labels each step of a multi-step job', async () => {
    const fake = new FakeApi();
    fake.artifactList.set('j2', [
      { name: 'load__executed.ipynb', step: 'load', size: 10, mime: 'application/x-ipynb+json' },
      { name: 'train__executed.ipynb', step: 'train', size: 10, mime: 'application/x-ipynb+json' },
      { name: 'train__executed.html', step: 'train', size: 10, mime: 'text/html' }
    ]);
    const view = new ArtifactsView(fake.client, 'j2');
    await view.refresh();
    const rows = Array.from(view.node.querySelectorAll<HTMLElement>('.jp-ext-Executed-row'));
    expect(rows.map(r => r.querySelector('.jp-ext-Executed-step')!.textContent)).toEqual([
      'load',
      'train'
    ]);
    const html = view.node.querySelector<HTMLAnchorElement>(
      '[data-testid="jupyter-ext-executed-html"][data-step="train"]'
    )!;
    // Without a host to show HTML in, it is a download.
    expect(html.getAttribute('href')).toBe(
      'http://host/api/jobs/j2/artifacts/train__executed.html'
    );
  });

  it('recognises executed notebooks of single- and multi-step jobs, and formats sizes', () => {
    expect(executedKind({ name: 'executed.ipynb', step: 'main' })).toBe('ipynb');
    expect(executedKind({ name: 'train__executed.html', step: 'train' })).toBe('html');
    expect(executedKind({ name: 'train__executed.html', step: 'eval' })).toBeNull();
    expect(executedKind({ name: 'plots__executed.ipynb.bak', step: 'plots' })).toBeNull();
    expect(humanSize(800)).toBe('800 B');
    expect(humanSize(1536)).toBe('1.5 KB');
    expect(humanSize(300 * 1024)).toBe('300 KB');
  });
});
