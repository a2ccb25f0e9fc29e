import { JupyterExtClient } from '../client';
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
    expect(b.querySelector('.jp-ext-JobsPanel-error')!.textContent).toBe(
      'cell 3 raised ValueError: x'
    );
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
      '403 Forbidden'
    );
  });

  it('formats durations', () => {
    const started = '2026-11-23T05:00:00Z';
    expect(duration({ started, finished: '2026-11-23T05:00:42Z' })).toBe('42s');
    expect(duration({ started, finished: '2026-11-23T05:02:05Z' })).toBe('2m05s');
    expect(duration({ started: null, finished: null })).toBe('');
  });
});
