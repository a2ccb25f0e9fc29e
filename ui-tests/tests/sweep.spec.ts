/**
 * A parameter sweep, the way a user does it (issue 15): a notebook with a parameters cell and
 * a step that logs metrics; "Run on cluster" with two swept parameters (3 x 2, grid); the sweep
 * job's view opens with a row per run, filled in as the runs end: its parameters, the metrics
 * each logged, status and duration. Sorting by a metric, the best run marked, a plot of the
 * metric against a parameter with a point per run; the best run opens like any job. The Jobs
 * panel shows the sweep as one row, its runs not as rows of their own.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { api } from '../lab';
import { expect, openLab, test, waitForJob } from '../fixtures';
import { jobIds, newJob, openJobsPanel, TERMINAL } from '../demo';
import { dialog, screenshot } from '../notebook';

const code = (source: string, tags: string[] = []) => ({
  cell_type: 'code',
  execution_count: null,
  metadata: tags.length ? { tags } : {},
  outputs: [],
  source
});

/**
 * The sweep demo: `prep` reads no swept parameter (shared by every run, cached), `train` logs a
 * loss that is lowest at lr=0.01, depth=5, and an accuracy.
 */
export function writeSweepNotebook(root: string, name: string): void {
  const nb = {
    cells: [
      {
        cell_type: 'markdown',
        metadata: {},
        source: '# Sweep demo\n\nA loss that depends on `lr` and `depth`.'
      },
      code('lr = 0.1\ndepth = 3', ['parameters']),
      code('data = [i / 100 for i in range(100)]\nprint("prepared", len(data), "points")', [
        'step:prep'
      ]),
      code(
        [
          'import math',
          'from jupyter_ext import log_metric',
          '',
          'loss = round(abs(math.log10(lr) + 2.3) + 1 / depth + sum(data) / 1000, 4)',
          'log_metric("loss", loss)',
          'log_metric("accuracy", round(1 - loss / 3, 4))',
          'print(f"lr={lr} depth={depth} loss={loss}")'
        ].join('\n'),
        ['step:train', 'after:prep']
      )
    ],
    metadata: {
      kernelspec: { display_name: 'Python 3', language: 'python', name: 'python3' },
      language_info: { name: 'python' }
    },
    nbformat: 4,
    nbformat_minor: 5
  };
  nb.cells.forEach((c: any, i) => (c.id = `cell-${i}`)); // nbformat 4.5: every cell has an id
  fs.writeFileSync(path.join(root, name), JSON.stringify(nb));
}

/** The numbers a column of the table shows, top to bottom. */
async function columnNumbers(view: import('@playwright/test').Locator, column: string) {
  const texts = await view
    .locator(`[data-testid="jupyter-ext-sweep-row"] td[data-column="${column}"]`)
    .allInnerTexts();
  return texts.map(Number);
}

test('a 3x2 sweep from the Run dialog: table, sorting, best run, plot, the best run’s view', async ({
  page,
  lab
}) => {
  test.setTimeout(360_000);
  const name = 'sweep_demo.ipynb';
  writeSweepNotebook(lab.root, name);
  await openLab(page, lab, name);

  // The Run dialog: two swept parameters, grid.
  const before = await jobIds(lab);
  await page.getByTestId('jupyter-ext-run').click();
  const form = page.getByTestId('jupyter-ext-submit-dialog');
  await expect(form.getByTestId('jupyter-ext-sweep-form')).toBeVisible();
  const run = dialog(page).getByRole('button', { name: 'Run', exact: true });
  await form.getByTestId('jupyter-ext-sweep-add').click();
  const entries = form.getByTestId('jupyter-ext-sweep-entry');
  await expect(entries.nth(0).getByTestId('jupyter-ext-sweep-name')).toHaveValue('lr');
  await entries.nth(0).getByTestId('jupyter-ext-sweep-values').fill('0.1, 0.01, 0.001');
  await form.getByTestId('jupyter-ext-sweep-add').click();
  await expect(entries.nth(1).getByTestId('jupyter-ext-sweep-name')).toHaveValue('depth');
  // A value that is not an int is refused in the form, and Run stays off.
  await entries.nth(1).getByTestId('jupyter-ext-sweep-values').fill('3, five');
  await expect(entries.nth(1)).toContainText("'five' is not a whole number");
  await expect(run).toBeDisabled();
  await entries.nth(1).getByTestId('jupyter-ext-sweep-values').fill('3, 5');
  await expect(form.getByTestId('jupyter-ext-sweep-count')).toHaveText('6 runs (lr: 3 × depth: 2)');
  // The swept parameters' own inputs are not used.
  await expect(form.locator('[data-testid="jupyter-ext-param"][data-param="lr"]')).toBeDisabled();
  await expect(run).toBeEnabled();
  await form.getByTestId('jupyter-ext-submit-fresh').scrollIntoViewIfNeeded();
  await screenshot(dialog(page), 'sweep-dialog');
  await run.click();
  await expect(form).toBeHidden();

  const sweep = await newJob(lab, before);
  expect(sweep.sweep).toMatchObject({ mode: 'grid', parameters: ['lr', 'depth'] });
  // Its view opened by itself; the rows come in as the runs are made and end.
  const view = page.locator(`[data-testid="jupyter-ext-job-view"][data-job="${sweep.id}"]`);
  await expect(view).toBeVisible();
  await expect(view).toHaveAttribute('data-kind', 'sweep');
  const rows = view.getByTestId('jupyter-ext-sweep-row');
  await expect(rows).toHaveCount(6, { timeout: 60_000 });

  const done = await waitForJob(lab, sweep.id, j => TERMINAL.includes(j.status), 300_000);
  expect(done.status).toBe('succeeded');
  expect(done.sweep.children).toHaveLength(6);
  await expect(view).toHaveAttribute('data-status', 'succeeded', { timeout: 30_000 });
  await expect(view.getByTestId('jupyter-ext-sweep-summary')).toContainText('6/6 done');

  // Every row shows the loss its run logged (the API's value, which the runs computed).
  const children = done.sweep.children as any[];
  for (const c of children) {
    const row = view.locator(`[data-testid="jupyter-ext-sweep-row"][data-job="${c.id}"]`);
    // what the notebook computes: |log10(lr) + 2.3| + 1/depth + 0.0495
    const computed = Math.abs(Math.log10(c.parameters.lr) + 2.3) + 1 / c.parameters.depth + 0.0495;
    expect(c.metrics.loss).toBeCloseTo(computed, 3);
    await expect(row.locator('td[data-column="metric:loss"]')).toHaveAttribute(
      'data-value',
      String(c.metrics.loss)
    );
    await expect(row.locator('td[data-column="param:lr"]')).toHaveText(String(c.parameters.lr));
    await expect(row.locator('td[data-column="status"]')).toHaveText('succeeded');
  }

  // Sorting by the loss: ascending as numbers, then descending.
  const sortLoss = view.locator(
    '[data-testid="jupyter-ext-sweep-sort"][data-column="metric:loss"]'
  );
  await sortLoss.click();
  await expect(sortLoss).toHaveAttribute('data-sort', 'asc');
  const losses = children.map(c => c.metrics.loss as number);
  expect(await columnNumbers(view, 'metric:loss')).toEqual([...losses].sort((a, b) => a - b));
  await sortLoss.click();
  await expect(sortLoss).toHaveAttribute('data-sort', 'desc');
  expect(await columnNumbers(view, 'metric:loss')).toEqual([...losses].sort((a, b) => b - a));

  // The best run for the loss (lowest): lr=0.01, depth=5.
  const best = children.reduce((a, b) => (b.metrics.loss < a.metrics.loss ? b : a));
  expect(best.parameters).toEqual({ lr: 0.01, depth: 5 });
  await expect(
    view.locator('[data-testid="jupyter-ext-sweep-row"][data-best="true"]')
  ).toHaveAttribute('data-job', best.id);
  // Accuracy, highest: the same run.
  await view.getByTestId('jupyter-ext-sweep-metric').selectOption('accuracy');
  await expect(view.getByTestId('jupyter-ext-sweep-goal')).toHaveText('Best: highest');
  await expect(
    view.locator('[data-testid="jupyter-ext-sweep-row"][data-best="true"]')
  ).toHaveAttribute('data-job', best.id);
  await view.getByTestId('jupyter-ext-sweep-metric').selectOption('loss');

  // The plot: the loss against lr (a log scale), a point per run, a line per depth.
  const plot = view.getByTestId('jupyter-ext-sweep-plot');
  await expect(plot.getByTestId('jupyter-ext-sweep-point')).toHaveCount(6);
  await expect(plot.locator('svg')).toHaveAttribute('data-x-scale', 'log');
  await expect(plot.locator('polyline')).toHaveCount(2);
  await expect(
    plot.locator('[data-testid="jupyter-ext-sweep-point"][data-best="true"]')
  ).toHaveAttribute('data-job', best.id);
  await view.getByTestId('jupyter-ext-sweep-x').selectOption('depth');
  await expect(plot.locator('svg')).toHaveAttribute('data-x-scale', 'linear');
  await expect(plot.locator('polyline')).toHaveCount(3);
  await view.getByTestId('jupyter-ext-sweep-x').selectOption('lr');
  await sortLoss.click(); // lowest loss first, for the picture
  await expect(sortLoss).toHaveAttribute('data-sort', 'asc');
  await screenshot(page, 'sweep');

  // The Jobs panel: one row for the sweep, 6/6 done; its runs are not rows.
  const panel = await openJobsPanel(page);
  const sweepRow = panel.locator(`[data-testid="jupyter-ext-job-row"][data-job="${sweep.id}"]`);
  await expect(sweepRow.getByTestId('jupyter-ext-sweep-done')).toHaveText('sweep · 6/6 done');
  for (const c of children) {
    await expect(
      panel.locator(`[data-testid="jupyter-ext-job-row"][data-job="${c.id}"]`)
    ).toHaveCount(0);
  }
  const listed = await api(lab, `jobs?parent=${sweep.id}`);
  expect(listed.jobs.map((j: any) => j.id).sort()).toEqual(children.map(c => c.id).sort());

  // The best run opens like any job: its steps, its log, the way back to its sweep.
  await view.locator(`[data-testid="jupyter-ext-sweep-row"][data-job="${best.id}"]`).click();
  const bestView = page.locator(`[data-testid="jupyter-ext-job-view"][data-job="${best.id}"]`);
  await expect(bestView).toBeVisible();
  await expect(bestView).toHaveAttribute('data-status', 'succeeded');
  await expect(bestView.getByTestId('jupyter-ext-job-parameters')).toContainText('lr = 0.01');
  await expect(
    bestView.locator('[data-testid="jupyter-ext-step-log"][data-step="train"]')
  ).toContainText(`lr=0.01 depth=5 loss=${best.metrics.loss}`);
  await expect(bestView.getByTestId('jupyter-ext-job-parent')).toBeVisible();
  await bestView.getByTestId('jupyter-ext-job-parent').click();
  await expect(view).toBeVisible();
});
