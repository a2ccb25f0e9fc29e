/**
 * A re-run, the way a user does it (issue 11, "cells show only the current run"): a job of the
 * tagged demo ran; Re-run in its job view asks first, with the job's parameters to change; the
 * new job's outputs replace the old ones in the notebook's cells (none of the old run stays
 * under the new state), the parameters cell says which values ran, the tabs tell the jobs
 * apart, and the job tabs come back after a page reload.
 */

import { expect, test, waitForJob } from '../fixtures';
import {
  newJob,
  jobIds,
  notebookTab,
  openJobsPanel,
  reopenLab,
  submitTaggedDemo,
  TERMINAL
} from '../demo';
import { cell, dialog, screenshot } from '../notebook';

/** The main area's tab of the job view of `id` (its title ends with the short id). */
function jobTab(page: import('@playwright/test').Page, id: string) {
  return page.locator('#jp-main-dock-panel .lm-TabBar-tab', { hasText: id.slice(0, 6) });
}

test('Re-run asks with the job’s parameters, then drives the notebook’s cells; job tabs survive a reload', async ({
  page,
  lab
}) => {
  test.setTimeout(240_000);
  const name = 'rerun_demo.ipynb';
  const { job: first, slow } = await submitTaggedDemo(page, lab, name, 'lines', '2');
  expect((await waitForJob(lab, first.id, j => TERMINAL.includes(j.status))).status).toBe(
    'succeeded'
  );
  const slowCell = cell(page, slow);
  const params = cell(page, 1); // the demo's parameters cell
  await expect(slowCell.getByTestId('jupyter-ext-cell-state')).toHaveAttribute(
    'data-state',
    'succeeded'
  );
  await expect(slowCell.locator('.jp-OutputArea')).toContainText('line 2 of 2');
  // The cell says lines = 6; the job ran with 2: the parameters cell shows what ran.
  await expect(params.getByTestId('jupyter-ext-cell-parameters')).toContainText('lines = 2');

  // The job view: its tab names the parameter that differs and a short id.
  const panel = await openJobsPanel(page);
  const row = panel.locator(`[data-testid="jupyter-ext-job-row"][data-job="${first.id}"]`);
  await expect(row.getByTestId('jupyter-ext-job-details')).toHaveText(
    `lines=2 · ${first.id.slice(0, 6)}`
  );
  await row.click();
  const view = page.locator(`[data-testid="jupyter-ext-job-view"][data-job="${first.id}"]`);
  await expect(view).toHaveAttribute('data-status', 'succeeded');
  await expect(jobTab(page, first.id)).toContainText('lines=2');
  await expect(view.getByTestId('jupyter-ext-job-parameters')).toHaveText('Parameters: lines = 2');

  // Re-run asks first, with this job's values, and runs what the user changed.
  const before = await jobIds(lab);
  await view.getByTestId('jupyter-ext-rerun').click();
  const form = page.getByTestId('jupyter-ext-submit-dialog');
  await expect(form).toBeVisible();
  const lines = form.locator('[data-testid="jupyter-ext-param"][data-param="lines"]');
  await expect(lines).toHaveValue('2');
  await lines.fill('3');
  await dialog(page).getByRole('button', { name: 'Re-run', exact: true }).click();
  await expect(form).toBeHidden();
  const second = await newJob(lab, before);
  expect(second.parameters).toMatchObject({ lines: 3 });

  // The notebook's cells follow the re-run: old outputs gone, the new ones in.
  await notebookTab(page, name).click();
  await expect(slowCell.getByTestId('jupyter-ext-cell-state')).toHaveAttribute(
    'data-state',
    'succeeded',
    { timeout: 120_000 }
  );
  await waitForJob(lab, second.id, j => TERMINAL.includes(j.status));
  await expect(slowCell.locator('.jp-OutputArea')).toContainText('line 3 of 3');
  const text = await slowCell.locator('.jp-OutputArea').innerText();
  expect(text.match(/line \d of \d/g)).toEqual(['line 1 of 3', 'line 2 of 3', 'line 3 of 3']);
  await expect(params.getByTestId('jupyter-ext-cell-parameters')).toContainText('lines = 3');

  // A reload brings the job tabs back (the layout restorer reopens them by id).
  await reopenLab(page, lab, name);
  await expect(jobTab(page, second.id)).toBeVisible();
  await jobTab(page, first.id).click();
  await expect(
    page.locator(`[data-testid="jupyter-ext-job-view"][data-job="${first.id}"]`)
  ).toHaveAttribute('data-status', 'succeeded');
});

/**
 * Close the notebook's tab as a user does; Lab asks about the unsaved outputs and `answer`
 * ('Save' or 'Discard') is clicked.
 */
async function closeNotebook(
  page: import('@playwright/test').Page,
  name: string,
  answer: 'Save' | 'Discard'
) {
  const tab = notebookTab(page, name);
  await tab.click();
  await tab.locator('.lm-TabBar-tabCloseIcon').click();
  // (Lab names its Discard button "Discard changes to file" for screen readers.)
  const button = dialog(page).getByRole('button', { name: new RegExp(`^${answer}`) });
  await expect(async () => {
    if (await button.isVisible()) {
      await button.click();
    }
    await expect(tab).toHaveCount(0, { timeout: 1000 });
  }).toPass({ timeout: 30_000 });
}

/** The slow cell shows exactly the lines of a run of `n` lines, in order, and no error. */
async function expectLinesOf(slowCell: import('@playwright/test').Locator, n: number) {
  await expect(slowCell.getByTestId('jupyter-ext-cell-state')).toHaveAttribute(
    'data-state',
    'succeeded',
    { timeout: 120_000 }
  );
  await expect(slowCell.locator('.jp-OutputArea')).toContainText(`line ${n} of ${n}`);
  const text = await slowCell.locator('.jp-OutputArea').innerText();
  expect(text.match(/line \d+ of \d+/g)).toEqual(
    Array.from({ length: n }, (_, i) => `line ${i + 1} of ${n}`)
  );
  expect(text).not.toContain('ValueError');
  await expect(slowCell.getByTestId('jupyter-ext-cell-error')).toBeHidden();
}

test('a re-run of a closed notebook opens it and its cells show the new run, from the job view and the panel', async ({
  page,
  lab
}) => {
  test.setTimeout(360_000);
  const name = 'rerun_closed.ipynb';
  // A valid float, but time.sleep refuses it: the step fails in its cell.
  const { job: failed, slow } = await submitTaggedDemo(page, lab, name, 'delay', '-1');
  expect((await waitForJob(lab, failed.id, j => TERMINAL.includes(j.status))).status).toBe(
    'failed'
  );
  const slowCell = cell(page, slow);
  const params = cell(page, 1); // the demo's parameters cell
  await expect(slowCell.getByTestId('jupyter-ext-cell-state')).toHaveAttribute(
    'data-state',
    'failed'
  );
  await expect(slowCell.getByTestId('jupyter-ext-cell-error')).toContainText(
    'sleep length must be non-negative'
  );
  // The user saves what the cells show and closes the notebook.
  await closeNotebook(page, name, 'Save');

  // Re-run from the failed job's view: the notebook opens beside the new job's view and its
  // cells show the new run, not the old error.
  const panel = await openJobsPanel(page);
  await panel.locator(`[data-testid="jupyter-ext-job-row"][data-job="${failed.id}"]`).click();
  const view = page.locator(`[data-testid="jupyter-ext-job-view"][data-job="${failed.id}"]`);
  await expect(view).toHaveAttribute('data-status', 'failed');
  let before = await jobIds(lab);
  await view.getByTestId('jupyter-ext-rerun').click();
  const form = page.getByTestId('jupyter-ext-submit-dialog');
  await expect(form).toBeVisible();
  await form.locator('[data-testid="jupyter-ext-param"][data-param="delay"]').fill('0.2');
  await form.locator('[data-testid="jupyter-ext-param"][data-param="lines"]').fill('3');
  await dialog(page).getByRole('button', { name: 'Re-run', exact: true }).click();
  await expect(form).toBeHidden();
  const second = await newJob(lab, before);
  expect(second.parameters).toMatchObject({ delay: 0.2, lines: 3 });
  await expect(notebookTab(page, name)).toBeVisible({ timeout: 60_000 });
  // Both in sight: the notebook beside the new job's view.
  const secondView = page.locator(`[data-testid="jupyter-ext-job-view"][data-job="${second.id}"]`);
  await expect(secondView).toBeVisible();
  await expectLinesOf(slowCell, 3);
  await expect(params.getByTestId('jupyter-ext-cell-parameters')).toContainText('delay = 0.2');
  expect((await waitForJob(lab, second.id, j => TERMINAL.includes(j.status))).status).toBe(
    'succeeded'
  );
  await expect(secondView).toHaveAttribute('data-status', 'succeeded');
  // The new job's view has nothing to excuse: its notebook's cells follow it.
  await expect(secondView.locator('.jp-ext-JobView-message')).toBeHidden();
  await screenshot(page, 'rerun-opens-notebook');

  // Closed again, this time without saving (the file still names the second job, as it was
  // when that job started): the panel's Re-run, from the keyboard, does the same.
  await closeNotebook(page, name, 'Discard');
  await openJobsPanel(page);
  const rerun = panel.locator(
    `[data-testid="jupyter-ext-job-row"][data-job="${second.id}"] [data-testid="jupyter-ext-job-rerun"]`
  );
  await expect(rerun).toHaveAccessibleName(new RegExp(`^Re-run job .*${second.id.slice(0, 6)}`));
  before = await jobIds(lab);
  await rerun.focus();
  await page.keyboard.press('Enter');
  await expect(form).toBeVisible();
  await expect(form.locator('[data-testid="jupyter-ext-param"][data-param="lines"]')).toHaveValue(
    '3'
  );
  await form.locator('[data-testid="jupyter-ext-param"][data-param="lines"]').fill('2');
  await dialog(page).getByRole('button', { name: 'Re-run', exact: true }).click();
  await expect(form).toBeHidden();
  const third = await newJob(lab, before);
  expect(third.parameters).toMatchObject({ delay: 0.2, lines: 2 });
  await expect(notebookTab(page, name)).toBeVisible({ timeout: 60_000 });
  await expect(
    page.locator(`[data-testid="jupyter-ext-job-view"][data-job="${third.id}"]`)
  ).toBeVisible();
  expect((await waitForJob(lab, third.id, j => TERMINAL.includes(j.status))).status).toBe(
    'succeeded'
  );
  // Only the third run's lines: the second job the file named is not replayed over them.
  await expectLinesOf(slowCell, 2);
  await expect(params.getByTestId('jupyter-ext-cell-parameters')).toContainText('lines = 2');
});
