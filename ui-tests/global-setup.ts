/**
 * Build the labextension when its sources are newer than the build, then start one
 * `jupyter lab` (local backend) shared by the tests; the returned function stops it.
 */

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO, startLab, stopLab, tail } from './lab';

function newest(dir: string): number {
  let latest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(full) : fs.statSync(full).mtimeMs);
  }
  return latest;
}

/**
 * Rebuild labextension/ (lib + the prebuilt extension) if src/ or style/ changed since
 * (UI_SKIP_BUILD=1: test the build as it is).
 */
export function buildIfStale(): void {
  if (process.env.UI_SKIP_BUILD === '1') {
    return;
  }
  const ext = path.join(REPO, 'labextension');
  const built = path.join(REPO, 'jupyter_ext', 'labextension', 'package.json');
  const sources = Math.max(newest(path.join(ext, 'src')), newest(path.join(ext, 'style')));
  if (fs.existsSync(built) && fs.statSync(built).mtimeMs >= sources) {
    return;
  }
  const env = { ...process.env, PATH: `${path.join(REPO, '.venv', 'bin')}:${process.env.PATH}` };
  console.log('ui-tests: labextension sources changed, running `jlpm build`');
  execFileSync('jlpm', ['build'], { cwd: ext, env, stdio: 'inherit' });
}

export default async function globalSetup(): Promise<() => Promise<void>> {
  buildIfStale();
  const lab = await startLab();
  process.env.UI_LAB_URL = lab.url;
  process.env.UI_LAB_TOKEN = lab.token;
  process.env.UI_LAB_ROOT = lab.root;
  process.env.UI_LAB_LOG = lab.log;
  return async () => {
    const failed = process.env.UI_KEEP_LAB === '1';
    if (failed) {
      console.log(`ui-tests: server files kept in ${lab.home}\n${tail(lab.log, 20)}`);
    }
    await stopLab(lab, failed);
  };
}
