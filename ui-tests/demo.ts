/**
 * The demo notebook the browser scenarios run (examples/ui_demo.ipynb, two cells tagged as
 * steps), and the helpers they share: submitting it, finding the job it made, the panel.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Page } from '@playwright/test';
import { api, REPO } from './lab';
import { expect, openLab } from './fixtures';
import { dialog, findCell } from './notebook';

export const TERMINAL = ['succeeded', 'failed', 'cancelled'];

/** Ids of the jobs the server has now. */
export async function jobIds(lab: { url: string; token: string }): Promise<Set<string>> {
  return new Set((await api(lab, 'jobs')).jobs.map((j: any) => j.id));
}

/** The one job created since `before`. */
export async function newJob(
  lab: { url: string; token: string },
  before: Set<string>
): Promise<any> {
  let found: any[] = [];
  await expect
    .poll(async () => {
      found = (await api(lab, 'jobs')).jobs.filter((j: any) => !before.has(j.id));
      return found.length;
    })
    .toBe(1);
  return found[0];
}

/** A copy of the demo with its two steps already tagged (tagging is the first test). */
export function taggedDemo(root: string, name: string): void {
  const source = JSON.parse(fs.readFileSync(path.join(REPO, 'examples', 'ui_demo.ipynb'), 'utf-8'));
  const code = source.cells.filter((c: any) => c.cell_type === 'code');
  const text = (c: any) => (Array.isArray(c.source) ? c.source.join('') : c.source);
  code.find((c: any) => /time\.sleep/.test(text(c))).metadata.tags = ['step:slow'];
  code.find((c: any) => /savefig/.test(text(c))).metadata.tags = ['step:plot', 'after:slow'];
  for (const c of code) {
    c.outputs = [];
  }
  delete source.metadata.jupyter_ext_run;
  fs.writeFileSync(path.join(root, name), JSON.stringify(source));
}

/**
 * Open a tagged copy of the demo as `name` and run it from the submit dialog with one
 * parameter changed; answers the job and the indexes of the two steps' cells.
 */
export async function submitTaggedDemo(
  page: Page,
  lab: { url: string; token: string; root: string },
  name: string,
  param: string,
  value: string
): Promise<{ job: any; slow: number; plot: number }> {
  taggedDemo(lab.root, name);
  await openLab(page, lab, name);
  const slow = await findCell(page, /time\.sleep/);
  const plot = await findCell(page, /savefig/);
  const before = await jobIds(lab);
  await page.getByTestId('jupyter-ext-run').click();
  const form = page.getByTestId('jupyter-ext-submit-dialog');
  await form.locator(`[data-testid="jupyter-ext-param"][data-param="${param}"]`).fill(value);
  await dialog(page).getByRole('button', { name: 'Run', exact: true }).click();
  return { job: await newJob(lab, before), slow, plot };
}

export async function openJobsPanel(page: Page) {
  const panel = page.getByTestId('jupyter-ext-jobs-panel');
  if (!(await panel.isVisible())) {
    await page.locator('.jp-SideBar .lm-TabBar-tab[data-id="jupyter-ext-jobs-panel"]').click();
  }
  await expect(panel).toBeVisible();
  return panel;
}

/** The notebook's tab in the main area. */
export function notebookTab(page: Page, name: string) {
  return page.locator('#jp-main-dock-panel .lm-TabBar-tab', { hasText: name });
}

/** Open Lab again, as a user coming back (the workspace reopens the notebook), on `name`. */
export async function reopenLab(page: Page, lab: { url: string }, name = 'ui_demo.ipynb') {
  await page.goto(`${lab.url}lab`);
  await page.evaluate(async () => {
    await (window as any).jupyterapp.restored;
  });
  await notebookTab(page, name).click();
  await page.locator('.jp-NotebookPanel:visible .jp-Cell').first().waitFor();
}
