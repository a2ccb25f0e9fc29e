import { defineConfig } from '@playwright/test';

/**
 * Debian's Chromium (no browser download), headless, against one real `jupyter lab`
 * started by global-setup.ts. One worker: the machine has 2 cores and the tests share
 * the server's job queue.
 */
export default defineConfig({
  testDir: './tests',
  globalSetup: './global-setup.ts',
  timeout: 120_000,
  expect: { timeout: 30_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [['list']],
  outputDir: './test-results',
  use: {
    browserName: 'chromium',
    headless: true,
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: ['--no-sandbox']
    },
    viewport: { width: 1400, height: 900 },
    actionTimeout: 15_000,
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure'
  }
});
