/**
 * Helpers for driving a notebook in JupyterLab the way a user does (clicks and typing), plus
 * read-only looks at the notebook model through `window.jupyterapp` to check what the UI wrote.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect, Locator, Page } from '@playwright/test';
import { REPO } from './lab';

/** The notebook shown in the main area. */
export function notebook(page: Page): Locator {
  return page.locator('.jp-NotebookPanel:visible .jp-Notebook');
}

/** The cell at `index` (all cells, markdown included, as in the file). */
export function cell(page: Page, index: number): Locator {
  return notebook(page).locator('.jp-Cell').nth(index);
}

/** Sources of the current notebook's cells, in order. */
export async function cellSources(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const widget = (window as any).jupyterapp.shell.currentWidget;
    return widget.content.widgets.map((c: any) => c.model.sharedModel.getSource());
  });
}

/** Tags of the current notebook's cell at `index`. */
export async function cellTags(page: Page, index: number): Promise<string[]> {
  return page.evaluate(i => {
    const widget = (window as any).jupyterapp.shell.currentWidget;
    return widget.content.widgets[i].model.getMetadata('tags') ?? [];
  }, index);
}

/** Index of the first cell whose source matches `pattern`; throws naming it when none does. */
export async function findCell(page: Page, pattern: RegExp): Promise<number> {
  // A notebook just opened may still be adding its cells: look until one matches.
  let sources: string[] = [];
  try {
    await expect
      .poll(async () => (sources = await cellSources(page)).findIndex(s => pattern.test(s)), {
        timeout: 30_000
      })
      .toBeGreaterThanOrEqual(0);
  } catch {
    throw new Error(`no cell of the notebook matches ${pattern}:\n${sources.join('\n---\n')}`);
  }
  return sources.findIndex(s => pattern.test(s));
}

/** The open JupyterLab dialog. */
export function dialog(page: Page): Locator {
  return page.locator('.jp-Dialog');
}

/** Screenshots go to docs/images only when asked for (`make screenshots`). */
export const WRITE_SCREENSHOTS = process.env.JUPYTER_EXT_SCREENSHOTS === '1';

/**
 * A screenshot of `what` (a page or an element). With JUPYTER_EXT_SCREENSHOTS=1 (`make
 * screenshots`) it is written to docs/images/NAME.png and its path answered; otherwise it is
 * taken all the same (the element must be there and stable) and kept nowhere, so a test run
 * leaves the tree as it was; answers ''.
 */
export async function screenshot(what: Page | Locator, name: string): Promise<string> {
  if (!WRITE_SCREENSHOTS) {
    await what.screenshot({ animations: 'disabled' });
    return '';
  }
  const dir = path.join(REPO, 'docs', 'images');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.png`);
  await what.screenshot({ path: file, animations: 'disabled' });
  return file;
}
