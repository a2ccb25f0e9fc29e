/**
 * The scenario, the way a user does it: open examples/ui_demo.ipynb, make two cells
 * steps with the cell chip's step editor (an invalid value is refused in the form), submit
 * with "Run on cluster", watch the outputs arrive in those cells while the job runs, see the
 * job succeed in the Jobs panel, open the job view and an image artifact's preview; then
 * submit a long run and cancel it. Screenshots of these states go to docs/images/.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { api, REPO } from '../lab';
import { expect, openLab, test, waitForJob } from '../fixtures';
import {
  jobIds,
  newJob,
  notebookTab,
  openJobsPanel,
  reopenLab,
  submitTaggedDemo,
  TERMINAL
} from '../demo';
import { cell, cellTags, dialog, findCell, screenshot } from '../notebook';

test('tag two cells, run on cluster, outputs stream into them, job view, artifact', async ({
  page,
  lab
}) => {
  test.setTimeout(240_000);
  // The demo as shipped (an earlier run of this test saved its tags into the server's copy).
  fs.copyFileSync(
    path.join(REPO, 'examples', 'ui_demo.ipynb'),
    path.join(lab.root, 'ui_demo.ipynb')
  );
  await openLab(page, lab, 'ui_demo.ipynb');
  await expect(page.locator('.jp-NotebookPanel:visible .jp-Cell').first()).toBeVisible();
  // The demo's cell that prints slowly, and the one that draws a figure and keeps it.
  const slow = await findCell(page, /time\.sleep/);
  const plot = await findCell(page, /savefig/);

  await test.step('the step editor refuses an invalid value inline and writes cell tags', async () => {
    const chip = cell(page, slow).getByTestId('jupyter-ext-cell-chip');
    await expect(chip).toHaveText('+ step');
    await chip.click();
    const editor = page.getByTestId('jupyter-ext-step-editor');
    const save = dialog(page).getByRole('button', { name: 'Save' });
    await expect(editor).toBeVisible();
    await editor.locator('input[data-field="name"]').fill('slow');
    await editor.locator('input[data-field="memory"]').fill('16GG');
    // Refused in the form: the field says why and Save is off until it is fixed.
    const error = editor.locator('[data-testid="jupyter-ext-field-error"][data-field="memory"]');
    await expect(error).toBeVisible();
    await expect(error).toContainText(/memory|16GG|quantit/i);
    await expect(save).toBeDisabled();
    await screenshot(dialog(page), 'step-editor-error');
    await editor.locator('input[data-field="memory"]').fill('1Gi');
    await expect(error).toBeHidden();
    await save.click();
    await expect(editor).toBeHidden();
    await expect(chip).toContainText('slow');
    await expect(chip).toContainText('1Gi');
    expect(await cellTags(page, slow)).toEqual(expect.arrayContaining(['step:slow', 'memory:1Gi']));
    expect(await cellTags(page, slow)).not.toContain('memory:16GG');

    const chip2 = cell(page, plot).getByTestId('jupyter-ext-cell-chip');
    await chip2.click();
    await expect(editor).toBeVisible();
    await editor.locator('input[data-field="name"]').fill('plot');
    await editor.locator('input[data-field="after"]').fill('slow');
    await editor.locator('input[data-field="cpu"]').fill('1');
    await save.click();
    await expect(editor).toBeHidden();
    await expect(chip2).toContainText('plot');
    expect(await cellTags(page, plot)).toEqual(
      expect.arrayContaining(['step:plot', 'after:slow', 'cpu:1'])
    );
  });

  let jobId = '';
  await test.step('Run on cluster shows steps and parameters, then submits', async () => {
    const before = await jobIds(lab);
    await page.getByTestId('jupyter-ext-run').click();
    const form = page.getByTestId('jupyter-ext-submit-dialog');
    await expect(form).toBeVisible();
    await expect(
      form.locator('[data-testid="jupyter-ext-submit-step"][data-step="slow"]')
    ).toContainText('1Gi');
    await expect(
      form.locator('[data-testid="jupyter-ext-submit-step"][data-step="plot"]')
    ).toBeVisible();
    await expect(form.getByTestId('jupyter-ext-submit-backend')).toHaveValue('local');
    // Prefilled from the notebook's parameters cell.
    const lines = form.locator('[data-testid="jupyter-ext-param"][data-param="lines"]');
    await expect(lines).toHaveValue('6');
    // A value of the wrong type is refused in the form, before anything is submitted.
    const run = dialog(page).getByRole('button', { name: 'Run', exact: true });
    await lines.fill('many');
    const lineError = form.locator('[data-testid="jupyter-ext-submit-error"][data-param="lines"]');
    await expect(lineError).toBeVisible();
    await expect(lineError).not.toBeEmpty();
    await expect(run).toBeDisabled();
    await lines.fill('5');
    await expect(lineError).toBeHidden();
    await expect(run).toBeEnabled();
    await screenshot(dialog(page), 'submit-dialog');
    await dialog(page).getByRole('button', { name: 'Run', exact: true }).click();
    await expect(form).toBeHidden();
    const job = await newJob(lab, before);
    jobId = job.id;
    expect(job.steps.map((s: any) => s.name)).toEqual(['slow', 'plot']);
    expect(job.parameters).toMatchObject({ lines: 5 });
  });

  await test.step('outputs arrive in the cells while the job runs', async () => {
    const slowCell = cell(page, slow);
    const first = slowCell.locator('.jp-OutputArea-output', { hasText: 'line 1 of 5' });
    await expect(first).toBeVisible({ timeout: 90_000 });
    // The first line is on screen and the job is not over: it streamed, not landed at the end.
    const status = (await api(lab, `jobs/${jobId}`)).status;
    expect(TERMINAL, `job status when the first line showed: ${status}`).not.toContain(status);
    await expect(slowCell.getByTestId('jupyter-ext-cell-state')).toHaveAttribute(
      'data-state',
      'running'
    );
    await expect(slowCell.locator('.jp-OutputArea')).toContainText('line 2 of 5');
    await screenshot(page, 'live-outputs');
    // Leave and come back mid-run: the cells pick up from the last event they applied.
    expect(TERMINAL).not.toContain((await api(lab, `jobs/${jobId}`)).status);
    await reopenLab(page, lab);
    for (const index of [slow, plot]) {
      await expect(cell(page, index).getByTestId('jupyter-ext-cell-state')).toHaveAttribute(
        'data-state',
        'succeeded',
        { timeout: 120_000 }
      );
    }
    const done = await waitForJob(lab, jobId, j => TERMINAL.includes(j.status));
    expect(done.status).toBe('succeeded');
    // Every line once, in order; the figure as an image, as if run locally.
    const text = await slowCell.locator('.jp-OutputArea').innerText();
    expect(text.match(/line \d of 5/g)).toEqual([1, 2, 3, 4, 5].map(i => `line ${i} of 5`));
    await expect(cell(page, plot).locator('.jp-OutputArea-output img')).toBeVisible();
  });

  await test.step('reloading the page shows the same outputs, once', async () => {
    await reopenLab(page, lab);
    const slowCell = cell(page, slow);
    await expect(slowCell.getByTestId('jupyter-ext-cell-state')).toHaveAttribute(
      'data-state',
      'succeeded'
    );
    const text = await slowCell.locator('.jp-OutputArea').innerText();
    expect(text.match(/line \d of 5/g)).toEqual([1, 2, 3, 4, 5].map(i => `line ${i} of 5`));
  });

  await test.step('the Jobs panel shows the job succeeded with its steps', async () => {
    const panel = await openJobsPanel(page);
    const row = panel.locator(`[data-testid="jupyter-ext-job-row"][data-job="${jobId}"]`);
    await expect(row).toHaveAttribute('data-status', 'succeeded');
    for (const step of ['slow', 'plot']) {
      await expect(
        row.locator(`[data-testid="jupyter-ext-step-progress"][data-step="${step}"]`)
      ).toHaveAttribute('data-status', 'succeeded');
    }
    await screenshot(page, 'jobs-panel');
    await row.click();
  });

  await test.step('the job view shows the step graph and previews the image artifact', async () => {
    const view = page.locator(`[data-testid="jupyter-ext-job-view"][data-job="${jobId}"]`);
    await expect(view).toBeVisible();
    await expect(view).toHaveAttribute('data-status', 'succeeded');
    const graph = view.getByTestId('jupyter-ext-step-graph');
    for (const step of ['slow', 'plot']) {
      await expect(
        graph.locator(`[data-testid="jupyter-ext-graph-node"][data-step="${step}"]`)
      ).toHaveAttribute('data-status', 'succeeded');
    }
    await expect(
      view.locator('[data-testid="jupyter-ext-step-log"][data-step="slow"]')
    ).toContainText('line 5 of 5');
    // A finished job offers Re-run, not Cancel.
    await expect(view.getByTestId('jupyter-ext-rerun')).toBeVisible();
    await expect(view.getByTestId('jupyter-ext-cancel')).toBeHidden();
    await screenshot(page, 'job-view-graph');
    const image = view.locator('[data-testid="jupyter-ext-artifact"][data-name$="plot.png"]');
    await image.evaluate(el => el.scrollIntoView({ block: 'center' }));
    const preview = image.getByTestId('jupyter-ext-artifact-preview');
    await expect(preview).toBeVisible();
    // A real picture arrived, not a broken image.
    await expect
      .poll(() => preview.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth))
      .toBeGreaterThan(0);
    await screenshot(page, 'artifact-preview');
    // Its download link hands over the PNG itself.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      image.getByTestId('jupyter-ext-artifact-download').click()
    ]);
    const bytes = fs.readFileSync(await download.path());
    expect(bytes.subarray(1, 4).toString('latin1')).toBe('PNG');
  });
});

test('a long run is cancelled from the job view; panel and cells say so', async ({ page, lab }) => {
  test.setTimeout(180_000);
  const { job, slow, plot } = await submitTaggedDemo(page, lab, 'long_demo.ipynb', 'lines', '600');
  const slowCell = cell(page, slow);
  await expect(slowCell.locator('.jp-OutputArea-output', { hasText: 'line 1 of 600' })).toBeVisible(
    {
      timeout: 90_000
    }
  );
  await expect(slowCell.getByTestId('jupyter-ext-cell-state')).toHaveAttribute(
    'data-state',
    'running'
  );

  const panel = await openJobsPanel(page);
  const row = panel.locator(`[data-testid="jupyter-ext-job-row"][data-job="${job.id}"]`);
  await expect(row).toHaveAttribute('data-status', 'running');
  await row.click();
  const view = page.locator(`[data-testid="jupyter-ext-job-view"][data-job="${job.id}"]`);
  await expect(view).toBeVisible();
  await view.getByTestId('jupyter-ext-cancel').click();
  await expect(view).toHaveAttribute('data-status', 'cancelled', { timeout: 60_000 });
  await expect(row).toHaveAttribute('data-status', 'cancelled');
  const done = await waitForJob(lab, job.id, j => TERMINAL.includes(j.status));
  expect(done.status).toBe('cancelled');

  await notebookTab(page, 'long_demo.ipynb').click();
  await expect(slowCell.getByTestId('jupyter-ext-cell-state')).toHaveAttribute(
    'data-state',
    'cancelled'
  );
  // The step after it never ran.
  await expect(cell(page, plot).getByTestId('jupyter-ext-cell-state')).toHaveAttribute(
    'data-state',
    /not_run|cancelled/
  );
  await screenshot(page, 'cancelled');
});

test('an exception in a step is shown on its cell, in words; later steps do not run', async ({
  page,
  lab
}) => {
  test.setTimeout(120_000);
  // A valid float, but time.sleep refuses it: the step fails in that cell.
  const { job, slow, plot } = await submitTaggedDemo(page, lab, 'broken_demo.ipynb', 'delay', '-1');
  const done = await waitForJob(lab, job.id, j => TERMINAL.includes(j.status));
  expect(done.status).toBe('failed');
  const slowCell = cell(page, slow);
  await expect(slowCell.getByTestId('jupyter-ext-cell-state')).toHaveAttribute(
    'data-state',
    'failed'
  );
  const error = slowCell.getByTestId('jupyter-ext-cell-error');
  await expect(error).toBeVisible();
  await expect(error).toContainText('ValueError');
  await expect(error).toContainText('sleep length must be non-negative');
  await expect(cell(page, plot).getByTestId('jupyter-ext-cell-state')).toHaveAttribute(
    'data-state',
    'not_run'
  );
  // ... and says why, naming the step that failed.
  const why = cell(page, plot).getByTestId('jupyter-ext-cell-error');
  await expect(why).toContainText(/not run/i);
  await expect(why).toContainText('slow');
  await screenshot(page, 'cell-error');
});
