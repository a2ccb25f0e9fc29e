/**
 * Schedules, the way a user makes and keeps them: "Schedule…" on a notebook's toolbar opens
 * the dialog (presets, a cron expression the server refuses shown at its field, the time zone,
 * a parameter); the schedule shows in the Jobs panel's Schedules with its next run; Pause
 * (paused, no next run), Resume, Update snapshot, Delete (after asking). A schedule due every
 * minute fires: its run's dot opens the job. Screenshots: docs/images/schedules.png and
 * docs/images/schedule-dialog.png.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { api, REPO } from '../lab';
import { expect, openLab, test, waitForJob } from '../fixtures';
import { openJobsPanel, TERMINAL } from '../demo';
import { dialog, screenshot } from '../notebook';

// The server's 400 for the refused cron expression is logged by the browser, on purpose.
test.use({ allowedErrors: [/status of 400/] });

const NAME = 'schedule_demo.ipynb';

/** Delete every schedule the server has (none of them may fire into the other tests). */
async function deleteAll(lab: { url: string; token: string }): Promise<void> {
  for (const s of (await api(lab, 'schedules')).schedules) {
    await api(lab, `schedules/${s.id}`, { method: 'DELETE' });
  }
}

test('schedule a notebook from its toolbar, then pause, resume, re-snapshot and delete it', async ({
  page,
  lab
}) => {
  test.setTimeout(330_000);
  fs.copyFileSync(path.join(REPO, 'examples', 'hello.ipynb'), path.join(lab.root, NAME));
  await deleteAll(lab);
  try {
    await openLab(page, lab, NAME);
    await page.getByTestId('jupyter-ext-schedule').click();
    const form = page.getByTestId('jupyter-ext-schedule-dialog');
    await expect(form).toBeVisible();
    const cron = form.getByTestId('jupyter-ext-schedule-cron');
    const preset = form.getByTestId('jupyter-ext-schedule-preset');
    const zone = form.getByTestId('jupyter-ext-schedule-timezone');
    const accept = dialog(page).getByRole('button', { name: 'Schedule', exact: true });

    await test.step('the dialog: presets, words, the zone, a refusal at its field', async () => {
      await expect(cron).toHaveValue('0 2 * * *');
      await expect(form.getByTestId('jupyter-ext-schedule-words')).toHaveText(
        'Runs every day at 02:00.'
      );
      // The browser's own zone to start with.
      const browserZone = await page.evaluate(
        () => Intl.DateTimeFormat().resolvedOptions().timeZone
      );
      await expect(zone).toHaveValue(browserZone);
      await preset.selectOption({ label: 'Weekly, Monday at 02:00' });
      await expect(cron).toHaveValue('0 2 * * 1');
      await expect(form.getByTestId('jupyter-ext-schedule-words')).toHaveText(
        'Runs every Monday at 02:00.'
      );
      // Parameters as in the Run dialog, prefilled from the parameters cell.
      const count = form.locator('[data-testid="jupyter-ext-param"][data-param="count"]');
      await expect(count).toHaveValue('3');
      await count.fill('2');
      await form.getByTestId('jupyter-ext-schedule-name').fill('ui-nightly');
      await zone.fill('Europe/Berlin');
      // Five fields, so the form lets it go; the server's croniter refuses minute 61.
      await cron.fill('61 2 * * *');
      await expect(preset).toHaveValue('custom');
      await expect(accept).toBeEnabled();
      await accept.click();
      const cronError = form.locator(
        '[data-testid="jupyter-ext-schedule-error"][data-field="cron"]'
      );
      await expect(cronError).toBeVisible();
      await expect(cronError).toContainText('61');
      await expect(form).toBeVisible(); // still open, with what was typed
      await expect(count).toHaveValue('2');
      await expect(accept).toBeDisabled();
      expect((await api(lab, 'schedules')).schedules).toEqual([]);
      await preset.selectOption({ label: 'Daily at 02:00' });
      await expect(cron).toHaveValue('0 2 * * *');
      await expect(cronError).toBeHidden();
      await expect(accept).toBeEnabled();
      await dialog(page)
        .locator('.jp-Dialog-body')
        .evaluate(body => {
          body.scrollTop = 0;
        });
      await screenshot(dialog(page), 'schedule-dialog');
      await accept.click();
      await expect(form).toBeHidden();
    });

    const made = (await api(lab, 'schedules')).schedules;
    expect(made).toHaveLength(1);
    const daily = made[0];
    expect(daily).toMatchObject({
      name: 'ui-nightly',
      notebook: NAME,
      cron: '0 2 * * *',
      timezone: 'Europe/Berlin',
      paused: false,
      parameters: { count: 2 }
    });
    expect(daily.next_run).toBeGreaterThan(Date.now() / 1000);

    // The panel opens on the new schedule.
    const panel = page.getByTestId('jupyter-ext-jobs-panel');
    await expect(panel).toBeVisible();
    const row = panel.locator(`[data-testid="jupyter-ext-schedule"][data-schedule="${daily.id}"]`);
    await expect(row).toBeVisible();
    await expect(row).toContainText('ui-nightly');
    await expect(row).toContainText(NAME);
    await expect(row.getByTestId('jupyter-ext-schedule-when')).toHaveText(
      'every day at 02:00 · Europe/Berlin · 0 2 * * *'
    );
    const next = row.getByTestId('jupyter-ext-schedule-next');
    await expect(next).toHaveText(/^Next run .+ · in \d+ (min|h|h \d+ min)$/);
    await expect(next).toHaveAttribute('data-next', new Date(daily.next_run * 1000).toISOString());
    await expect(row.getByTestId('jupyter-ext-schedule-snapshot')).toContainText(
      'editing the notebook does not change them until you update the snapshot'
    );

    await test.step('pause: paused, no next run; resume: a next run again', async () => {
      await row.getByTestId('jupyter-ext-schedule-pause').click();
      await expect(row).toHaveAttribute('data-paused', 'true');
      await expect(row.getByTestId('jupyter-ext-schedule-paused')).toHaveText('paused');
      await expect(next).toHaveText('Paused: no next run');
      const paused = await api(lab, `schedules/${daily.id}`);
      expect([paused.paused, paused.next_run]).toEqual([true, null]);
      await row.getByTestId('jupyter-ext-schedule-resume').click();
      await expect(row).toHaveAttribute('data-paused', 'false');
      await expect(row.getByTestId('jupyter-ext-schedule-paused')).toHaveCount(0);
      await expect(next).toHaveText(/^Next run .+ · in /);
      expect((await api(lab, `schedules/${daily.id}`)).paused).toBe(false);
    });

    await test.step('update snapshot: a new snapshot time', async () => {
      const before = (await api(lab, `schedules/${daily.id}`)).snapshot_taken;
      // A snapshot time is kept to the second: let the clock pass the first one.
      await expect
        .poll(() => Date.now(), { timeout: 5_000 })
        .toBeGreaterThan(Date.parse(before) + 1_100);
      const note = row.getByTestId('jupyter-ext-schedule-snapshot');
      await row.getByTestId('jupyter-ext-schedule-update-snapshot').click();
      await expect
        .poll(async () => (await api(lab, `schedules/${daily.id}`)).snapshot_taken)
        .not.toBe(before);
      await expect(note).toContainText('just now');
    });

    await test.step('a schedule due every minute fires; its run opens the job', async () => {
      const minute = await api(lab, 'schedules', {
        method: 'POST',
        body: {
          notebook: NAME,
          cron: '* * * * *',
          timezone: 'UTC',
          name: 'ui-every-minute',
          parameters: { count: 1, delay: 0 }
        }
      });
      let run: any = null;
      await expect
        .poll(
          async () => {
            run = (await api(lab, `schedules/${minute.id}`)).runs.find((r: any) => r.job);
            return !!run;
          },
          { timeout: 100_000, intervals: [1000] }
        )
        .toBe(true);
      // One run is enough: pause it so it fires no more jobs into the other tests.
      await api(lab, `schedules/${minute.id}`, { method: 'PATCH', body: { paused: true } });
      const job = await waitForJob(lab, run.job, j => TERMINAL.includes(j.status));
      expect(job.status).toBe('succeeded');
      const minuteRow = panel.locator(
        `[data-testid="jupyter-ext-schedule"][data-schedule="${minute.id}"]`
      );
      const dot = minuteRow.locator(
        `[data-testid="jupyter-ext-schedule-run"][data-job="${run.job}"]`
      );
      await expect(dot).toHaveAttribute('data-status', 'succeeded', { timeout: 30_000 });
      await expect(minuteRow).toHaveAttribute('data-paused', 'true');
      await expect(dot).toHaveAccessibleName(/: done \(job /);
      await screenshot(page, 'schedules');
      await dot.click();
      const view = page.locator(`[data-testid="jupyter-ext-job-view"][data-job="${run.job}"]`);
      await expect(view).toBeVisible();
      await expect(view).toHaveAttribute('data-status', 'succeeded');
      await openJobsPanel(page);
    });

    await test.step('delete asks first, then the schedule is gone', async () => {
      await row.getByTestId('jupyter-ext-schedule-delete').click();
      await expect(dialog(page)).toContainText('Delete schedule ui-nightly?');
      await dialog(page).getByRole('button', { name: 'Cancel' }).click();
      await expect(row).toBeVisible();
      await row.getByTestId('jupyter-ext-schedule-delete').click();
      await dialog(page).getByRole('button', { name: 'Delete', exact: true }).click();
      await expect(row).toHaveCount(0);
      const left = (await api(lab, 'schedules')).schedules.map((s: any) => s.id);
      expect(left).not.toContain(daily.id);
    });
  } finally {
    await deleteAll(lab);
  }
});
