import { Widget } from '@lumino/widgets';
import { ApiError, JupyterExtClient } from '../client';
import { duration, statusText } from '../dom';
import { JobsPanel } from '../panel';
import { IEvent, IJob } from '../tokens';
import { FakeApi, job, step as fullStep } from './jobfakes';

function fakeClient(jobs: IJob[]) {
  const cancelled: string[] = [];
  const client = {
    listJobs: async () => jobs,
    streamEvents: () => ({ dispose: () => undefined }),
    cancel: async (id: string) => {
      cancelled.push(id);
      return jobs[0];
    }
  } as unknown as JupyterExtClient;
  return { client, cancelled };
}

describe('JobsPanel', () => {
  it('renders each job with status, steps, error and a Cancel button only while it runs', async () => {
    const step = (name: string, status: any) => ({ name, status, cells: [] }) as any;
    const { client, cancelled } = fakeClient([
      job({
        id: 'a',
        status: 'running',
        steps: [step('load', 'succeeded'), step('train', 'running')]
      }),
      job({
        id: 'b',
        name: 'old',
        status: 'failed',
        error: { message: 'cell 3 raised ValueError: x' }
      })
    ]);
    const panel = new JobsPanel(client);
    await panel.refresh();
    const items = panel.node.querySelectorAll('.jp-ext-Job');
    expect(items).toHaveLength(2);
    const [a, b] = Array.from(items) as HTMLElement[];
    expect(a.dataset.jobId).toBe('a');
    expect(a.querySelector('.jp-ext-Badge')!.textContent).toBe('running');
    expect(a.dataset.testid).toBe('jupyter-ext-job-row');
    expect([a.dataset.job, a.dataset.status, b.dataset.status]).toEqual(['a', 'running', 'failed']);
    const progress = Array.from(
      a.querySelectorAll<HTMLElement>('[data-testid="jupyter-ext-step-progress"]')
    );
    expect(progress.map(e => [e.dataset.step, e.dataset.status, e.textContent])).toEqual([
      ['load', 'succeeded', 'load'],
      ['train', 'running', 'train']
    ]);
    expect(b.querySelector('.jp-ext-Job-cancel')).toBeNull();
    expect(b.querySelector('.jp-ext-Job-error')!.textContent).toBe('cell 3 raised ValueError: x');
    (a.querySelector('.jp-ext-Job-cancel') as HTMLButtonElement).click();
    await new Promise(r => setTimeout(r, 0));
    expect(cancelled).toEqual(['a']);
  });

  it('says how to start when there are no jobs, and shows errors', async () => {
    const panel = new JobsPanel({ listJobs: async () => [] } as any);
    await panel.refresh();
    expect(panel.node.textContent).toContain('No jobs yet');
    const failing = new JobsPanel({
      listJobs: async () => {
        throw new Error('403 Forbidden');
      }
    } as any);
    await failing.refresh();
    expect(failing.node.querySelector('.jp-ext-JobsPanel-error')!.textContent).toBe(
      'Could not list jobs: 403 Forbidden'
    );
  });

  it('says why a cancel failed and keeps showing the job', async () => {
    const client = {
      listJobs: async () => [job({ id: 'a', name: 'train' })],
      cancel: async () => {
        throw new ApiError(409, 'job a already finished');
      }
    } as unknown as JupyterExtClient;
    const panel = new JobsPanel(client);
    await panel.refresh();
    const cancel = panel.node.querySelector('.jp-ext-Job-cancel') as HTMLButtonElement;
    expect(cancel.getAttribute('aria-label')).toBe('Cancel job train');
    cancel.click();
    await new Promise(r => setTimeout(r, 0));
    const status = panel.node.querySelector('[role="status"]') as HTMLElement;
    expect(status.hidden).toBe(false);
    expect(status.textContent).toBe('Could not cancel train: job a already finished');
    expect(panel.node.querySelectorAll('.jp-ext-Job')).toHaveLength(1);
  });

  it('shares one request between overlapping refreshes and announces new lists', async () => {
    let calls = 0;
    const client = {
      listJobs: async () => {
        calls += 1;
        return [job({ id: `j${calls}` })];
      }
    } as unknown as JupyterExtClient;
    const panel = new JobsPanel(client);
    const seen: string[][] = [];
    panel.jobsChanged.connect((_, jobs) => seen.push(jobs.map(j => j.id)));
    await Promise.all([panel.refresh(), panel.refresh()]);
    await panel.refresh();
    expect(calls).toBe(2);
    expect(seen).toEqual([['j1'], ['j2']]);
  });

  it('keeps keyboard focus on the same Cancel button across a refresh', async () => {
    const { client } = fakeClient([job({ id: 'a' }), job({ id: 'b' })]);
    const panel = new JobsPanel(client);
    Widget.attach(panel, document.body);
    await panel.refresh();
    const second = panel.node.querySelectorAll<HTMLButtonElement>('.jp-ext-Job-cancel')[1];
    second.focus();
    await panel.refresh();
    const focused = document.activeElement as HTMLElement;
    expect(focused).not.toBe(second); // the list was redrawn...
    expect(focused.closest<HTMLElement>('.jp-ext-Job')!.dataset.jobId).toBe('b'); // ...focus kept
    panel.dispose();
  });

  it('polls only while shown', async () => {
    jest.useFakeTimers();
    try {
      let calls = 0;
      const client = {
        listJobs: async () => {
          calls += 1;
          return [];
        }
      } as unknown as JupyterExtClient;
      const panel = new JobsPanel(client, 1000);
      Widget.attach(panel, document.body);
      await jest.advanceTimersByTimeAsync(3500);
      expect(calls).toBe(4); // on show, then every second
      panel.hide();
      await jest.advanceTimersByTimeAsync(5000);
      expect(calls).toBe(4);
      panel.dispose();
    } finally {
      jest.useRealTimers();
    }
  });

  it('has the id and test id the UI contract names', () => {
    const panel = new JobsPanel({ listJobs: async () => [] } as any);
    expect(panel.id).toBe('jupyter-ext-jobs-panel');
    expect(panel.node.dataset.testid).toBe('jupyter-ext-jobs-panel');
  });

  it('opens a job when its row or name is clicked, not when Cancel is', async () => {
    const { client, cancelled } = fakeClient([job({ id: 'a' })]);
    const panel = new JobsPanel(client);
    await panel.refresh();
    const opened: string[] = [];
    panel.jobActivated.connect((_, j) => opened.push(j.id));
    const row = panel.node.querySelector<HTMLElement>('[data-testid="jupyter-ext-job-row"]')!;
    row.querySelector<HTMLElement>('.jp-ext-Job-meta')!.click();
    row.querySelector<HTMLButtonElement>('.jp-ext-Job-open')!.click(); // Enter on it does the same
    row.querySelector<HTMLButtonElement>('.jp-ext-Job-cancel')!.click();
    await new Promise(r => setTimeout(r, 0));
    expect(opened).toEqual(['a', 'a']);
    expect(cancelled).toEqual(['a']);
  });

  it('follows running jobs live: progress by cells done, a status event refreshes the list', async () => {
    const fake = new FakeApi();
    const steps = [
      fullStep({ name: 'load', status: 'succeeded', cells: [0, 1] }),
      fullStep({ name: 'train', status: 'running', cells: [2, 3, 4, 5], after: ['load'] })
    ];
    fake.add(job({ id: 'run', steps }), [
      { type: 'step.start', step: 'train', attempt: 1 },
      { type: 'cell.end', step: 'train', cell_index: 2, attempt: 1 }
    ]);
    fake.add(
      job({
        id: 'old',
        status: 'succeeded',
        steps: [fullStep({ name: 'main', status: 'succeeded' })]
      })
    );
    let lists = 0;
    const client = fake.client;
    const listJobs = client.listJobs.bind(client);
    (client as any).listJobs = async () => {
      lists++;
      return listJobs();
    };
    const panel = new JobsPanel(client, 60_000);
    Widget.attach(panel, document.body);
    await new Promise(r => setTimeout(r, 0));
    expect(panel.following).toEqual(['run']); // only the job still running
    const bar = () =>
      panel.node.querySelector(
        '[data-job="run"] [data-step="train"] [role="progressbar"]'
      ) as HTMLElement;
    await new Promise(r => setTimeout(r, 200));
    expect(bar().getAttribute('aria-valuenow')).toBe('25');
    fake.emit('run', {
      type: 'cell.end',
      step: 'train',
      cell_index: 3,
      attempt: 1
    } as Partial<IEvent>);
    await new Promise(r => setTimeout(r, 200));
    expect(bar().getAttribute('aria-valuenow')).toBe('50');
    expect(bar().getAttribute('aria-label')).toBe('Step train: running, 2/4 cells');
    const before = lists;
    fake.jobs.set(
      'run',
      job({
        id: 'run',
        status: 'succeeded',
        steps: steps.map(s => ({ ...s, status: 'succeeded' as const }))
      })
    );
    fake.emit('run', { type: 'job.end', status: 'succeeded' } as Partial<IEvent>);
    await new Promise(r => setTimeout(r, 200));
    expect(lists).toBe(before + 1);
    const row = panel.node.querySelector<HTMLElement>('[data-job="run"]')!;
    expect(row.dataset.status).toBe('succeeded');
    expect(panel.following).toEqual([]); // its stream was closed
    expect(fake.listeners.get('run')).toEqual([]);
    panel.dispose();
  });

  it('closes its streams when hidden', async () => {
    const fake = new FakeApi();
    fake.add(job({ id: 'run', steps: [fullStep({ name: 'main', status: 'running' })] }));
    const panel = new JobsPanel(fake.client, 60_000);
    Widget.attach(panel, document.body);
    await new Promise(r => setTimeout(r, 0));
    expect(panel.following).toEqual(['run']);
    panel.hide();
    expect(panel.following).toEqual([]);
    expect(fake.listeners.get('run')).toEqual([]);
    panel.dispose();
  });

  it('offers Re-run on finished notebook jobs: asks first, submits what was confirmed, shows it', async () => {
    const fake = new FakeApi();
    fake.add(
      job({
        id: 'done1',
        name: 'train',
        status: 'failed',
        parameters: { lr: 0.1 },
        backend: 'local'
      })
    );
    fake.add(job({ id: 'run1', status: 'running' }));
    fake.add(job({ id: 'cell1', status: 'succeeded', notebook: '%%remote' }));
    const panel = new JobsPanel(fake.client, 60_000);
    await panel.refresh();
    const rerunOf = (id: string) =>
      panel.node.querySelector<HTMLButtonElement>(
        `[data-job="${id}"] [data-testid="jupyter-ext-job-rerun"]`
      );
    expect(rerunOf('done1')).toBeNull(); // not before the job views' plugin gives the actions
    const asked: string[] = [];
    let answer: any = null;
    const started: [string, string][] = [];
    let opened = 0;
    panel.jobActivated.connect(() => opened++);
    panel.rerunActions = {
      confirm: async j => {
        asked.push(j.id);
        // While it asks, its button is off (a second click does not ask twice).
        expect(rerunOf(j.id)!.disabled).toBe(true);
        return answer;
      },
      started: (created, of) => started.push([created.id, of.id])
    };
    panel.render();
    const button = rerunOf('done1')!;
    expect(button.textContent).toBe('Re-run');
    expect(button.getAttribute('aria-label')).toBe('Re-run job train · lr=0.1 · done1');
    expect(rerunOf('run1')).toBeNull(); // a running job offers Cancel instead
    expect(rerunOf('cell1')).toBeNull(); // a %%remote cell has no notebook to run again
    button.click();
    await new Promise(r => setTimeout(r, 0));
    expect(asked).toEqual(['done1']);
    expect(fake.submitted).toEqual([]); // cancelled in the dialog: nothing submitted
    answer = { parameters: { lr: 0.5 }, backend: 'local' };
    await panel.rerun(fake.jobs.get('done1')!);
    expect(fake.submitted).toEqual([
      { notebook: 'examples/train.ipynb', parameters: { lr: 0.5 }, backend: 'local', name: 'train' }
    ]);
    expect(started).toEqual([['new1', 'done1']]);
    expect(opened).toBe(0); // the button is not a click on the row
    expect(rerunOf('done1')!.disabled).toBe(false);
    fake.submitError = new ApiError(400, 'notebook: examples/train.ipynb does not exist');
    await panel.rerun(fake.jobs.get('done1')!);
    expect(panel.node.querySelector('.jp-ext-JobsPanel-error')!.textContent).toBe(
      'Could not re-run train: notebook: examples/train.ipynb does not exist'
    );
    expect(started).toHaveLength(1);
    panel.dispose();
  });

  it('says a waiting job’s place in line, as the CLI does', async () => {
    expect(statusText({ status: 'queued', queue_position: 1 })).toBe('queued (1st in line)');
    expect(statusText({ status: 'queued', queue_position: 2 })).toBe('queued (2nd in line)');
    expect(statusText({ status: 'queued', queue_position: 13 })).toBe('queued (13th in line)');
    expect(statusText({ status: 'queued', queue_position: 23 })).toBe('queued (23rd in line)');
    expect(statusText({ status: 'queued', queue_position: null })).toBe('queued');
    expect(statusText({ status: 'running', queue_position: 3 })).toBe('running');
    expect(statusText({ status: 'not_run' })).toBe('not run');
    const { client } = fakeClient([job({ id: 'w', status: 'queued', queue_position: 2 })]);
    const panel = new JobsPanel(client);
    await panel.refresh();
    const badge = panel.node.querySelector('.jp-ext-Job .jp-ext-Badge') as HTMLElement;
    expect(badge.textContent).toBe('queued (2nd in line)');
    expect(badge.dataset.status).toBe('queued');
  });

  it('formats durations', () => {
    const started = '2026-11-23T05:00:00Z';
    expect(duration({ started, finished: '2026-11-23T05:00:42Z' })).toBe('42s');
    expect(duration({ started, finished: '2026-11-23T05:02:05Z' })).toBe('2m05s');
    expect(duration({ started, finished: '2026-11-23T06:02:05Z' })).toBe('1h02m');
    expect(duration({ started, finished: null }, Date.parse('2026-11-23T05:00:09Z'))).toBe('9s');
    expect(duration({ started: null, finished: null })).toBe('');
  });
});
