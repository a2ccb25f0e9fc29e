/**
 * Test fixtures: the shared server, a page opened on JupyterLab, and a watch on the console
 * that fails the test on any error coming from our extension (jupyter-ext / jupyter_ext in
 * the message, its source URL or its stack).
 */

import { ConsoleMessage, expect, Page, test as base } from '@playwright/test';
import { api, ILab } from './lab';

export { expect };

/** An error is ours when it names the extension or comes from a file of it. */
export const OURS = /jupyter[-_]ext/i;

export interface IConsoleError {
  text: string;
  url: string;
}

type Fixtures = {
  lab: Pick<ILab, 'url' | 'token' | 'root' | 'log'>;
  /** Errors a test expects (e.g. a 400 it provokes on purpose); matched against the text. */
  allowedErrors: RegExp[];
  /** Every console error and uncaught exception seen by the page, ours or not. */
  consoleErrors: IConsoleError[];
};

/** Watch a page's console; returns the list it fills. */
export function watchConsole(page: Page): IConsoleError[] {
  const errors: IConsoleError[] = [];
  page.on('console', (message: ConsoleMessage) => {
    if (message.type() === 'error') {
      errors.push({ text: message.text(), url: message.location().url ?? '' });
    }
  });
  page.on('pageerror', error => {
    errors.push({ text: `${error.name}: ${error.message}\n${error.stack ?? ''}`, url: '' });
  });
  return errors;
}

/** The errors of `errors` that come from our extension and are not allowed. */
export function ourErrors(errors: IConsoleError[], allowed: RegExp[] = []): IConsoleError[] {
  return errors.filter(
    e => (OURS.test(e.text) || OURS.test(e.url)) && !allowed.some(re => re.test(e.text))
  );
}

export const test = base.extend<Fixtures>({
  lab: async ({}, use) => {
    const { UI_LAB_URL, UI_LAB_TOKEN, UI_LAB_ROOT, UI_LAB_LOG } = process.env;
    if (!UI_LAB_URL || !UI_LAB_TOKEN || !UI_LAB_ROOT || !UI_LAB_LOG) {
      throw new Error('the global setup did not start jupyter lab');
    }
    await use({ url: UI_LAB_URL, token: UI_LAB_TOKEN, root: UI_LAB_ROOT, log: UI_LAB_LOG });
  },
  allowedErrors: [[], { option: true }],
  consoleErrors: [
    async ({ page, allowedErrors }, use, testInfo) => {
      const errors = watchConsole(page);
      await use(errors);
      if (errors.length) {
        await testInfo.attach('console-errors', {
          body: errors.map(e => `${e.url}\n${e.text}`).join('\n\n'),
          contentType: 'text/plain'
        });
      }
      expect(
        ourErrors(errors, allowedErrors).map(e => `${e.text} (${e.url})`),
        'console errors from the jupyter-ext extension'
      ).toEqual([]);
    },
    { auto: true }
  ]
});

/** Open JupyterLab (optionally a file in it) and wait until it has restored its layout. */
export async function openLab(
  page: Page,
  lab: Pick<ILab, 'url' | 'token'>,
  file?: string
): Promise<void> {
  const where = file ? `lab/tree/${file}` : 'lab';
  await page.goto(`${lab.url}${where}?token=${lab.token}&reset`);
  await page.waitForFunction(() => (window as any).jupyterapp !== undefined, null, {
    timeout: 60_000
  });
  await page.evaluate(async () => {
    await (window as any).jupyterapp.restored;
  });
  if (file?.endsWith('.ipynb')) {
    // Opened from the URL once the layout is restored: wait until its cells are on screen.
    await page.locator('.jp-NotebookPanel:visible .jp-Cell').first().waitFor({ timeout: 60_000 });
  }
}

/** Is a plugin of ours activated in the page's JupyterLab? */
export async function activated(page: Page, plugin: string): Promise<boolean> {
  return page.evaluate(id => (window as any).jupyterapp.isPluginActivated(id), plugin);
}

/** Poll a job over REST until `until(job)` holds; answers that job. */
export async function waitForJob(
  lab: Pick<ILab, 'url' | 'token'>,
  id: string,
  until: (job: any) => boolean,
  timeoutMs = 90_000
): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await api(lab, `jobs/${id}`);
    if (until(job)) {
      return job;
    }
    if (Date.now() > deadline) {
      throw new Error(`job ${id} is still ${job.status} after ${timeoutMs} ms`);
    }
    await new Promise(resolve => setTimeout(resolve, 250));
  }
}
