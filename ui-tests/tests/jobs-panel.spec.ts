/**
 * JupyterLab loads with the extension and no console error from it; the Jobs panel lists a
 * job submitted through the REST API and shows it reach `succeeded`.
 */

import { api } from '../lab';
import { activated, expect, openLab, test, waitForJob } from '../fixtures';

test('Lab loads the extension without console errors from it', async ({ page, lab }) => {
  await openLab(page, lab);
  expect(await activated(page, 'jupyter-ext:plugin')).toBe(true);
  const extensions = await page.evaluate(() =>
    JSON.parse(
      document.getElementById('jupyter-config-data')!.textContent!
    ).federated_extensions.map((e: { name: string }) => e.name)
  );
  expect(extensions).toContain('jupyter-ext');
  // Give late errors (a failed first poll, a bad settings schema) a moment to show up.
  await page.waitForTimeout(1500);
});

test('the Jobs panel lists a job submitted over REST until it succeeds', async ({ page, lab }) => {
  await openLab(page, lab);
  const tab = page.locator('.jp-SideBar .lm-TabBar-tab[data-id="jupyter-ext-jobs-panel"]');
  await tab.click();
  const panel = page.getByTestId('jupyter-ext-jobs-panel');
  await expect(panel).toBeVisible();

  const job = await api(lab, 'jobs', {
    method: 'POST',
    body: { notebook: 'hello.ipynb', parameters: { count: 2, delay: 0.1 }, name: 'ui-rest-job' }
  });
  const row = panel.locator(`[data-testid="jupyter-ext-job-row"][data-job="${job.id}"]`);
  await expect(row).toBeVisible();
  await expect(row).toContainText('ui-rest-job');
  await expect(row).toHaveAttribute('data-status', 'succeeded', { timeout: 60_000 });
  // The panel agrees with the server.
  const done = await waitForJob(lab, job.id, j => j.status === 'succeeded');
  expect(done.status).toBe('succeeded');
});
