import { driveCells, ICellRun, INotebookOpener, labOpener } from '../rerun';
import { RunRegistry, samePath } from '../runregistry';
import { IJob } from '../tokens';
import { job } from './jobfakes';

/** A notebook's run as the registry and driveCells see it, recording the jobs it was given. */
class FakeRun implements ICellRun {
  isDisposed = false;
  started: string[] = [];
  constructor(readonly path: string) {}
  get context() {
    return { localPath: this.path };
  }
  async start(j: IJob): Promise<void> {
    this.started.push(j.id);
  }
}

describe('RunRegistry', () => {
  it('finds a notebook’s live run however its path is spelled', () => {
    const runs = new RunRegistry<FakeRun>();
    const a = new FakeRun('work/a.ipynb');
    runs.add(a);
    expect(runs.find('./work/a.ipynb')).toBe(a);
    expect(runs.find('/work/a.ipynb')).toBe(a);
    expect(runs.find('work/b.ipynb')).toBeNull();
    a.isDisposed = true;
    expect(runs.find('work/a.ipynb')).toBeNull();
    expect(samePath('x.ipynb', 'y.ipynb')).toBe(false);
  });

  it('answers a waiter at once, when the run registers later, or null after the timeout', async () => {
    const runs = new RunRegistry<FakeRun>();
    const open = new FakeRun('a.ipynb');
    runs.add(open);
    await expect(runs.when('a.ipynb', 10)).resolves.toBe(open);
    const later = runs.when('b.ipynb', 5000);
    const other = new FakeRun('c.ipynb');
    runs.add(other); // another notebook: not the one waited for
    const b = new FakeRun('b.ipynb');
    runs.add(b);
    await expect(later).resolves.toBe(b);
    await expect(runs.when('never.ipynb', 20)).resolves.toBeNull();
    // A waiter that timed out is gone: registering that notebook afterwards answers nobody twice.
    runs.add(new FakeRun('never.ipynb'));
  });
});

/** An opener whose notebook `path` opens (its run registering a little later) unless missing. */
function fakeOpener(open: FakeRun[], files: string[], opens = true) {
  const runs = new RunRegistry<FakeRun>();
  open.forEach(r => runs.add(r));
  const calls: string[] = [];
  const opened: FakeRun[] = [];
  const opener: INotebookOpener = {
    find: path => runs.find(path),
    exists: async path => {
      calls.push(`exists ${path}`);
      return files.includes(path);
    },
    open: async (path, ref) => {
      calls.push(`open ${path} beside ${ref}`);
      if (opens) {
        // Lab makes the notebook's widget, then its run, after the command returned.
        setTimeout(() => {
          const run = new FakeRun(path);
          opened.push(run);
          runs.add(run);
        }, 20);
      }
    },
    whenRun: path => runs.when(path, 200)
  };
  return { opener, calls, opened };
}

describe('driveCells', () => {
  it('hands the re-run to the open notebook’s cells', async () => {
    const run = new FakeRun('examples/train.ipynb');
    const { opener, calls } = fakeOpener([run], ['examples/train.ipynb']);
    await expect(driveCells(job({ id: 'new1' }), opener, 'view')).resolves.toBeNull();
    expect(run.started).toEqual(['new1']);
    expect(calls).toEqual([]); // nothing opened: it was open
  });

  it('opens a notebook that is not open beside the view, and drives it once its run exists', async () => {
    const { opener, calls, opened } = fakeOpener([], ['examples/train.ipynb']);
    await expect(driveCells(job({ id: 'new1' }), opener, 'view-new1')).resolves.toBeNull();
    expect(calls).toEqual([
      'exists examples/train.ipynb',
      'open examples/train.ipynb beside view-new1'
    ]);
    expect(opened.map(r => r.started)).toEqual([['new1']]);
  });

  it('says so when the notebook no longer exists, and opens nothing', async () => {
    const { opener, calls } = fakeOpener([], []);
    const note = await driveCells(job({ id: 'new1' }), opener, 'view');
    expect(note).toBe(
      'The notebook examples/train.ipynb no longer exists, so no cells show job new1; the job runs ' +
        'all the same, and its outputs are here and in its artifacts.'
    );
    expect(calls).toEqual(['exists examples/train.ipynb']);
  });

  it('says so when the opened notebook never gets a run to follow the job', async () => {
    const { opener } = fakeOpener([], ['examples/train.ipynb'], false);
    const note = await driveCells(job({ id: 'new1' }), opener);
    expect(note).toContain(
      'examples/train.ipynb was opened, but its cells could not follow job new1'
    );
  });

  it('leaves a %%remote cell job alone: it has no notebook of its own', async () => {
    const { opener, calls } = fakeOpener([], []);
    await expect(driveCells(job({ notebook: '%%remote' }), opener)).resolves.toBeNull();
    expect(calls).toEqual([]);
  });
});

describe('labOpener', () => {
  function app(listing: { [dir: string]: { name: string; type: string }[] }) {
    const executed: [string, any][] = [];
    const lab = {
      commands: {
        execute: async (id: string, args?: any) => {
          executed.push([id, args]);
        }
      },
      serviceManager: {
        contents: {
          get: async (path: string, options?: any) => {
            expect(options).toEqual({ type: 'directory', content: true });
            if (!(path in listing)) {
              throw new Error(`no folder ${path}`);
            }
            return { content: listing[path] };
          }
        }
      }
    };
    return { lab, executed };
  }

  it('checks the file in its folder’s listing, and opens it beside the job view without focus', async () => {
    const { lab, executed } = app({
      work: [
        { name: 'a.ipynb', type: 'notebook' },
        { name: 'b.ipynb', type: 'directory' }
      ],
      '': []
    });
    const run = new FakeRun('work/a.ipynb');
    const opener = labOpener(lab, { find: () => null, when: async () => run });
    await expect(opener.exists('work/a.ipynb')).resolves.toBe(true);
    await expect(opener.exists('work/b.ipynb')).resolves.toBe(false);
    await expect(opener.exists('c.ipynb')).resolves.toBe(false);
    await expect(opener.exists('gone/a.ipynb')).rejects.toThrow('no folder gone');
    await opener.open('work/a.ipynb', 'jupyter-ext-job-new1');
    expect(executed).toEqual([
      [
        'docmanager:open',
        {
          path: 'work/a.ipynb',
          options: { mode: 'split-left', ref: 'jupyter-ext-job-new1', activate: false }
        }
      ]
    ]);
    await expect(opener.whenRun('work/a.ipynb')).resolves.toBe(run);
    // A folder that is gone is a notebook that is gone, in driveCells' words.
    const note = await driveCells(job({ id: 'n', notebook: 'gone/a.ipynb' }), opener);
    expect(note).toContain('The notebook gone/a.ipynb no longer exists');
  });
});
