/**
 * Cached steps, the way a user meets them (issue 15): a notebook with caching on (its metadata)
 * runs twice from "Run on cluster"; the second run's steps come from the cache, so its cells
 * show exactly what the first run printed (a random token proves it) with a "cached from job"
 * chip that opens the first job; the job view and the panel say so too. "Run fresh" from the
 * job view (the Run dialog with "Ignore cached results" checked) runs every step again.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect, openLab, test, waitForJob } from '../fixtures';
import { jobIds, newJob, notebookTab, openJobsPanel, TERMINAL } from '../demo';
import { cell, dialog, findCell, screenshot } from '../notebook';

const code = (source: string, tags: string[] = []) => ({
  cell_type: 'code',
  execution_count: null,
  metadata: tags.length ? { tags } : {},
  outputs: [],
  source
});

/** Two steps, caching on for the notebook: each prints a random token (a new one per real run). */
function writeCacheNotebook(root: string, name: string): void {
  const nb = {
    cells: [
      code('size = 3', ['parameters']),
      code('import random\ntoken = random.randint(10**8, 10**9)\nprint("prep token", token)', [
        'step:prep'
      ]),
      code('print("train token", random.randint(10**8, 10**9), "after", token * size)', [
        'step:train',
        'after:prep'
      ])
    ],
    metadata: {
      jupyter_ext: { cache: true },
      kernelspec: { display_name: 'Python 3', language: 'python', name: 'python3' },
      language_info: { name: 'python' }
    },
    nbformat: 4,
    nbformat_minor: 5
  };
  nb.cells.forEach((c: any, i) => (c.id = `cell-${i}`)); // nbformat 4.5: every cell has an id
  fs.writeFileSync(path.join(root, name), JSON.stringify(nb));
}

type Page = import('@playwright/test').Page;

/** Run the open notebook from its toolbar (fresh: "Ignore cached results"); answers the job. */
async function runFromToolbar(page: Page, lab: any, fresh = false): Promise<any> {
  const before = await jobIds(lab);
  await page.getByTestId('jupyter-ext-run').click();
  const form = page.getByTestId('jupyter-ext-submit-dialog');
  await expect(form.getByTestId('jupyter-ext-submit-fresh')).toBeVisible();
  if (fresh) {
    await form.getByTestId('jupyter-ext-submit-fresh').check();
  }
  await dialog(page).getByRole('button', { name: 'Run', exact: true }).click();
  await expect(form).toBeHidden();
  const job = await newJob(lab, before);
  const done = await waitForJob(lab, job.id, j => TERMINAL.includes(j.status), 120_000);
  expect(done.status).toBe('succeeded');
  return done;
}

/** The token a cell printed. */
async function tokenOf(page: Page, index: number): Promise<string> {
  const outputs = cell(page, index).locator('.jp-OutputArea');
  await expect(outputs).toContainText('token');
  return (/token (\d+)/.exec(await outputs.innerText()) ?? [])[1];
}

test('a second run takes its steps from the cache; the cells, job view and panel say from which job; Run fresh runs them again', async ({
  page,
  lab
}) => {
  test.setTimeout(300_000);
  const name = 'cache_demo.ipynb';
  writeCacheNotebook(lab.root, name);
  await openLab(page, lab, name);
  const prep = await findCell(page, /prep token/);
  const train = await findCell(page, /train token/);
  const state = (i: number) => cell(page, i).getByTestId('jupyter-ext-cell-state');
  const chip = (i: number) => cell(page, i).getByTestId('jupyter-ext-cell-cached');

  // First run: both steps run; nothing is cached yet.
  const first = await runFromToolbar(page, lab);
  expect(first.steps.map((s: any) => s.cache?.hit)).toEqual([false, false]);
  await expect(state(train)).toHaveAttribute('data-state', 'succeeded');
  const prepToken = await tokenOf(page, prep);
  const trainToken = await tokenOf(page, train);
  await expect(chip(prep)).toBeHidden();

  // Second run: nothing changed, so both steps are the first run's, outputs and all.
  const second = await runFromToolbar(page, lab);
  expect(second.steps.map((s: any) => s.cache?.from?.job)).toEqual([first.id, first.id]);
  for (const i of [prep, train]) {
    await expect(chip(i)).toBeVisible();
    await expect(chip(i)).toHaveText(`cached from job ${first.id.slice(0, 6)}`);
    await expect(state(i)).toHaveAttribute('data-state', 'succeeded');
  }
  expect(await tokenOf(page, prep)).toBe(prepToken);
  expect(await tokenOf(page, train)).toBe(trainToken);
  // Exactly what the first run showed: the token once, not twice.
  expect(
    (await cell(page, prep).locator('.jp-OutputArea').innerText()).match(/token/g)
  ).toHaveLength(1);
  await screenshot(page, 'cached-cells');

  // The chip opens the job the outputs came from.
  await chip(prep).click();
  const firstView = page.locator(`[data-testid="jupyter-ext-job-view"][data-job="${first.id}"]`);
  await expect(firstView).toBeVisible();
  await expect(firstView).toHaveAttribute('data-status', 'succeeded');

  // The panel and the second job's view say where each step's result came from.
  const panel = await openJobsPanel(page);
  const row = panel.locator(`[data-testid="jupyter-ext-job-row"][data-job="${second.id}"]`);
  await expect(row.getByTestId('jupyter-ext-step-cached')).toHaveCount(2);
  await row.click();
  const view = page.locator(`[data-testid="jupyter-ext-job-view"][data-job="${second.id}"]`);
  await expect(view).toBeVisible();
  const cachedStep = view.locator(
    '[data-testid="jupyter-ext-step"][data-step="prep"] [data-testid="jupyter-ext-step-cached"]'
  );
  await expect(cachedStep).toHaveText(`cached from job ${first.id}`);
  await expect(
    view.locator('[data-testid="jupyter-ext-step-log"][data-step="prep"]')
  ).toContainText(`prep token ${prepToken}`);

  // Run fresh: the Run dialog with "Ignore cached results" checked; every step runs again.
  const before = await jobIds(lab);
  await view.getByTestId('jupyter-ext-run-fresh').click();
  const form = page.getByTestId('jupyter-ext-submit-dialog');
  await expect(form.getByTestId('jupyter-ext-submit-fresh')).toBeChecked();
  await dialog(page).getByRole('button', { name: 'Re-run', exact: true }).click();
  const third = await newJob(lab, before);
  const ran = await waitForJob(lab, third.id, j => TERMINAL.includes(j.status), 120_000);
  expect(ran.status).toBe('succeeded');
  expect(ran.steps.map((s: any) => s.cache?.hit)).toEqual([false, false]);
  await notebookTab(page, name).click();
  await expect(chip(prep)).toBeHidden({ timeout: 60_000 });
  await expect(state(train)).toHaveAttribute('data-state', 'succeeded');
  await expect.poll(() => tokenOf(page, prep)).not.toBe(prepToken);
});
