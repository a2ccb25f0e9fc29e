/**
 * The wheel is the whole install: build the release (`make dist`: the sdist from a clean copy of
 * the tree, the wheel from that sdist with the production labextension, twine check, the
 * allow-list of scripts/check_dist.py), `pip install` the wheel into a fresh virtual
 * environment (jupyterlab and the rest from PyPI, through a wheelhouse cached under
 * ~/.cache/jupyter-ext/ keyed by Python version and the wheel's requirements), then check
 * that Jupyter lists both extensions as enabled and OK, and that this environment's
 * JupyterLab loads in Chromium with our extension and no console error from it.
 */

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { api, REPO, startLab, stopLab, tail } from '../lab';
import { activated, expect, openLab, ourErrors, test, waitForJob, watchConsole } from '../fixtures';

const VENV_PYTHON = path.join(REPO, '.venv', 'bin', 'python');

/** Run a command; answers stdout+stderr, throws with them when it fails. */
function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
  timeout = 300_000
): string {
  const result = spawnSync(cmd, args, { cwd: REPO, env, encoding: 'utf-8', timeout });
  // Without colour codes (Jupyter paints "enabled" and "OK").
  // eslint-disable-next-line no-control-regex
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.replace(/\x1b\[[0-9;]*m/g, '');
  if (result.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited with ${result.status}:\n${output}`);
  }
  return output;
}

test.describe('the built wheel', () => {
  test.setTimeout(1_200_000);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'wheel-check-'));
  test.afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  test('installs with pip and loads in JupyterLab', async ({ browser }, testInfo) => {
    // 1. The release build of this checkout, exactly as `make dist` makes it (into a folder of
    // its own): the sdist from a clean copy, the wheel from the sdist, both checked.
    const dist = path.join(work, 'dist');
    const built = run('make', ['-s', 'dist', `DIST=${dist}`], process.env, 900_000);
    await testInfo.attach('make dist', { body: built, contentType: 'text/plain' });
    const wheels = fs.readdirSync(dist).filter(f => f.endsWith('.whl'));
    expect(wheels).toHaveLength(1);
    expect(fs.readdirSync(dist).filter(f => f.endsWith('.tar.gz'))).toHaveLength(1);
    const wheel = path.join(dist, wheels[0]);
    const listing = run(VENV_PYTHON, [
      '-c',
      'import sys, zipfile; print("\\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))',
      wheel
    ]).split('\n');
    const data = listing.filter(name => name.includes('.data/data/'));
    const ext = 'share/jupyter/labextensions/jupyter-ext/';
    expect(data.some(n => n.endsWith(`${ext}package.json`))).toBe(true);
    expect(data.some(n => new RegExp(`${ext}static/remoteEntry\\.[0-9a-f]+\\.js$`).test(n))).toBe(
      true
    );
    expect(data.some(n => n.endsWith('etc/jupyter/jupyter_server_config.d/jupyter_ext.json'))).toBe(
      true
    );
    expect(listing.filter(n => n.includes('node_modules'))).toEqual([]);
    // The production build: no source maps, no development build log.
    expect(listing.filter(n => n.endsWith('.map') || n.endsWith('build_log.json'))).toEqual([]);

    // 2. A fresh environment with nothing but the wheel and what it requires.
    const requires = run(VENV_PYTHON, [
      '-c',
      'import sys; ' +
        'import zipfile, email; ' +
        'z = zipfile.ZipFile(sys.argv[1]); ' +
        'm = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")][0]; ' +
        'print("\\n".join(sorted(email.message_from_bytes(z.read(m)).get_all("Requires-Dist") or [])))',
      wheel
    ]);
    const pyVersion = run(VENV_PYTHON, [
      '-c',
      'import sys; print("%d.%d" % sys.version_info[:2])'
    ]).trim();
    const key = createHash('sha256').update(requires).digest('hex').slice(0, 16);
    const wheelhouse = path.join(
      os.homedir(),
      '.cache',
      'jupyter-ext',
      'wheelhouse',
      `py${pyVersion}-${key}`
    );
    const venv = path.join(work, 'venv');
    run(VENV_PYTHON, ['-m', 'venv', venv]);
    const pip = path.join(venv, 'bin', 'pip');
    if (!fs.existsSync(path.join(wheelhouse, '.complete'))) {
      run(pip, ['download', '-q', '-d', wheelhouse, wheel]);
      fs.writeFileSync(path.join(wheelhouse, '.complete'), requires);
    }
    run(pip, ['install', '-q', '--no-index', '--find-links', wheelhouse, wheel]);

    // 3. Jupyter, in that environment and with the developer's directories out of the way,
    // sees the labextension and the server extension, both enabled and OK.
    const home = path.join(work, 'home');
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PATH: `${path.join(venv, 'bin')}:${process.env.PATH}`,
      JUPYTER_CONFIG_DIR: path.join(home, 'config'),
      JUPYTER_DATA_DIR: path.join(home, 'data'),
      JUPYTER_RUNTIME_DIR: path.join(home, 'runtime')
    };
    delete env.JUPYTER_PATH;
    delete env.JUPYTER_CONFIG_PATH;
    const jupyter = path.join(venv, 'bin', 'jupyter');
    const labext = run(jupyter, ['labextension', 'list'], env);
    await testInfo.attach('jupyter labextension list', { body: labext, contentType: 'text/plain' });
    // The line sits under this environment's own labextensions directory.
    const section = labext
      .split(/\n(?=\s*\S*\/share\/jupyter\/labextensions\b)/)
      .find(s => s.trimStart().startsWith(path.join(venv, 'share', 'jupyter', 'labextensions')));
    expect(section, labext).toBeDefined();
    expect(section!).toMatch(/jupyter-ext v\S+ enabled OK/);
    const serverext = run(jupyter, ['server', 'extension', 'list'], env);
    await testInfo.attach('jupyter server extension list', {
      body: serverext,
      contentType: 'text/plain'
    });
    expect(serverext).toMatch(/jupyter_ext enabled/);
    expect(serverext).toMatch(/jupyter_ext \S+ OK/);

    // 4. That environment's JupyterLab loads in Chromium with our extension, no error from it,
    // and its server runs a job.
    const lab = await startLab({ jupyter });
    try {
      const context = await browser.newContext();
      const page = await context.newPage();
      const errors = watchConsole(page);
      await openLab(page, lab);
      expect(await activated(page, 'jupyter-ext:plugin')).toBe(true);
      const job = await api(lab, 'jobs', {
        method: 'POST',
        body: { notebook: 'hello.ipynb', parameters: { count: 1, delay: 0 } }
      });
      const done = await waitForJob(lab, job.id, j =>
        ['succeeded', 'failed', 'cancelled'].includes(j.status)
      );
      expect(done.status, tail(lab.log)).toBe('succeeded');
      await page.waitForTimeout(1000);
      expect(ourErrors(errors).map(e => `${e.text} (${e.url})`)).toEqual([]);
      await context.close();
    } finally {
      await stopLab(lab);
    }
  });
});
