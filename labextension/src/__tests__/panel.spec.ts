import { Widget } from '@lumino/widgets';
import { ApiError, JupyterExtClient } from '../client';
import { duration, JobsPanel } from '../panel';
import { IJob } from '../tokens';

function job(over: Partial<IJob>): IJob {
  return {
    id: 'j1',
    name: 'train',
    notebook: 'examples/train.ipynb',
    user: 'ada',
    backend: 'local',
    status: 'running',
    parameters: {},
    created: '2026-11-23T05:00:00Z',
    started: '2026-11-23T05:00:01Z',
    finished: null,
    error: null,
    last_seq: 3,
    steps: [],
    ...over
  };
}

function fakeClient(jobs: IJob[]) {
  const cancelled: string[] = [];
  const client = {
    listJobs: async () => jobs,
    cancel: async (id: string) => {
      cancelled.push(id);
      return jobs[0];
    }
  } as unknown as JupyterExtClient;
  return { client, cancelled };
}

describe('JobsPanel', () => {
  it('renders each job with status, steps, error and a Cancel button only while it runs', async () => {
    const step = (name: string, status: any) => ({ name, status }) as any;
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
    expect(
      Array.from(a.querySelectorAll('.jp-ext-Job-steps .jp-ext-Badge')).map(e => e.textContent)
    ).toEqual(['load', 'train']);
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

  it('formats durations', () => {
    const started = '2026-11-23T05:00:00Z';
    expect(duration({ started, finished: '2026-11-23T05:00:42Z' })).toBe('42s');
    expect(duration({ started, finished: '2026-11-23T05:02:05Z' })).toBe('2m05s');
    expect(duration({ started, finished: '2026-11-23T06:02:05Z' })).toBe('1h02m');
    expect(duration({ started, finished: null }, Date.parse('2026-11-23T05:00:09Z'))).toBe('9s');
    expect(duration({ started: null, finished: null })).toBe('');
  });
});
