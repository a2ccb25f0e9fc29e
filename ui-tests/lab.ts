/**
 * Start and stop a real `jupyter lab` for the browser tests: a free port, a random token, a
 * temporary notebook directory holding copies of examples/, and every Jupyter directory
 * (config, data, runtime, Lab settings and workspaces, jupyter-ext's job store) inside that
 * temporary directory, so neither the developer's settings nor earlier runs leak in.
 */

import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

/** The repository root (ui-tests/..). */
export const REPO = path.resolve(__dirname, '..');

export interface ILab {
  /** `http://127.0.0.1:PORT/` (ends with a slash). */
  url: string;
  token: string;
  /** The server's root directory (copies of examples/). */
  root: string;
  /** The temporary directory holding everything of this server. */
  home: string;
  /** The server's stdout+stderr log file. */
  log: string;
  process: ChildProcess;
}

/** A TCP port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Lab settings that keep pop-ups (news, update checks) out of the way of the tests. */
const SETTINGS: { [file: string]: object } = {
  '@jupyterlab/apputils-extension/notification.jupyterlab-settings': {
    fetchNews: 'false',
    checkForUpdates: false
  }
};

export interface IStartOptions {
  /** The `jupyter` executable of the environment to run (default: the repo's .venv). */
  jupyter?: string;
  /** Directories copied into the server root (default: examples/). */
  copy?: string[];
  /** Give up waiting after this many ms. */
  timeoutMs?: number;
}

/** Start `jupyter lab` and resolve once it answers `/api/status` with the token. */
export async function startLab(options: IStartOptions = {}): Promise<ILab> {
  const jupyter = options.jupyter ?? path.join(REPO, '.venv', 'bin', 'jupyter');
  if (!fs.existsSync(jupyter)) {
    throw new Error(`${jupyter} is missing: run \`make .venv/.installed-test\` first`);
  }
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-ui-'));
  const root = path.join(home, 'notebooks');
  fs.mkdirSync(root);
  for (const dir of options.copy ?? [path.join(REPO, 'examples')]) {
    fs.cpSync(dir, root, { recursive: true });
  }
  const dirs = {
    JUPYTER_CONFIG_DIR: path.join(home, 'config'),
    JUPYTER_DATA_DIR: path.join(home, 'data'),
    JUPYTER_RUNTIME_DIR: path.join(home, 'runtime'),
    JUPYTERLAB_SETTINGS_DIR: path.join(home, 'lab-settings'),
    JUPYTERLAB_WORKSPACES_DIR: path.join(home, 'lab-workspaces'),
    JUPYTER_EXT_DATA_DIR: path.join(home, 'jupyter-ext-data'),
    IPYTHONDIR: path.join(home, 'ipython'),
    MPLCONFIGDIR: path.join(home, 'matplotlib')
  };
  for (const dir of Object.values(dirs)) {
    fs.mkdirSync(dir, { recursive: true });
  }
  for (const [file, value] of Object.entries(SETTINGS)) {
    const target = path.join(dirs.JUPYTERLAB_SETTINGS_DIR, file);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, JSON.stringify(value));
  }
  const env: NodeJS.ProcessEnv = { ...process.env, ...dirs };
  // Nothing from the developer's shell that would point Jupyter elsewhere.
  for (const name of ['JUPYTER_PATH', 'JUPYTER_CONFIG_PATH', 'JUPYTER_PREFER_ENV_PATH']) {
    delete env[name];
  }
  for (const name of Object.keys(env)) {
    if (name.startsWith('JUPYTER_EXT_') && name !== 'JUPYTER_EXT_DATA_DIR') {
      delete env[name];
    }
  }
  env.PATH = `${path.dirname(jupyter)}:${env.PATH}`;
  const port = await freePort();
  const token = randomBytes(24).toString('hex');
  const args = [
    'lab',
    '--no-browser',
    '--ip=127.0.0.1',
    `--port=${port}`,
    '--port-retries=0',
    `--ServerApp.root_dir=${root}`,
    `--IdentityProvider.token=${token}`,
    // The tests drive the UI by clicks; `window.jupyterapp` is only used to wait and look.
    '--LabApp.expose_app_in_browser=True',
    '--JupyterExt.backend=local'
  ];
  if (isRoot()) {
    args.push('--allow-root');
  }
  const log = path.join(home, 'server.log');
  const out = fs.openSync(log, 'a');
  const child = spawn(jupyter, args, {
    cwd: root,
    env,
    stdio: ['ignore', out, out],
    detached: true
  });
  fs.closeSync(out);
  const url = `http://127.0.0.1:${port}/`;
  const lab: ILab = { url, token, root, home, log, process: child };
  const deadline = Date.now() + (options.timeoutMs ?? 90_000);
  let exited: number | null = null;
  child.on('exit', code => {
    exited = code ?? -1;
  });
  for (;;) {
    if (exited !== null) {
      throw new Error(`jupyter lab exited with ${exited}:\n${tail(log)}`);
    }
    try {
      const response = await fetch(`${url}api/status`, {
        headers: { Authorization: `token ${token}` }
      });
      if (response.ok) {
        return lab;
      }
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stopLab(lab);
      throw new Error(`jupyter lab did not answer within the time limit:\n${tail(log)}`);
    }
    await new Promise(resolve => setTimeout(resolve, 250));
  }
}

/** The last lines of a log file, for error messages. */
export function tail(file: string, lines = 40): string {
  try {
    return fs.readFileSync(file, 'utf-8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Stop the server (SIGTERM to its process group, SIGKILL after 10 s) and remove its files. */
export async function stopLab(lab: ILab, keep = false): Promise<void> {
  const child = lab.process;
  if (child.exitCode === null && child.signalCode === null && child.pid) {
    const done = new Promise(resolve => child.once('exit', resolve));
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }, 10_000);
    await done;
    clearTimeout(timer);
  }
  if (!keep) {
    fs.rmSync(lab.home, { recursive: true, force: true });
  }
}

/** Call the jupyter-ext REST API with the server's token. */
export async function api<T = any>(
  lab: Pick<ILab, 'url' | 'token'>,
  route: string,
  init: { method?: string; body?: unknown } = {}
): Promise<T> {
  const response = await fetch(`${lab.url}jupyter-ext/api/${route}`, {
    method: init.method ?? 'GET',
    headers: {
      Authorization: `token ${lab.token}`,
      ...(init.body !== undefined ? { 'Content-Type': 'application/json' } : {})
    },
    body: init.body !== undefined ? JSON.stringify(init.body) : undefined
  });
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`${init.method ?? 'GET'} ${route}: ${response.status} ${text}`);
  }
  return (text ? JSON.parse(text) : undefined) as T;
}
