import { Widget } from '@lumino/widgets';
import { ApiError } from '../client';
import { IJobViewOptions, JobView, resourcesText } from '../jobview';
import { JobsPanel } from '../panel';
import type { IStepError } from '../tokens';
import { FakeApi, job, settle, step } from './jobfakes';

beforeAll(() => {
  (URL as any).createObjectURL = () => 'blob:test';
  (URL as any).revokeObjectURL = () => undefined;
});

function twoSteps(status: 'running' | 'succeeded' | 'failed' = 'running') {
  return job({
    id: 'j1',
    status,
    parameters: { lr: 0.1 },
    steps: [
      step({ name: 'load', status: 'succeeded', cells: [1, 2] }),
      step({
        name: 'train',
        after: ['load'],
        status: status === 'running' ? 'running' : status,
        cells: [3, 4, 5, 6],
        attempt: 1,
        resources: { gpu: 2, memory: '16Gi', cpu: null, image: null, extra_limits: {} }
      })
    ]
  });
}

const sel = (root: HTMLElement, testid: string, extra = '') =>
  root.querySelector<HTMLElement>(`[data-testid="${testid}"]${extra}`);

async function open(
  fake: FakeApi,
  id = 'j1',
  openJob?: (id: string) => void,
  more: Partial<IJobViewOptions> = {}
) {
  const view = new JobView({ client: fake.client, jobId: id, openJob, refetchMs: 5, ...more });
  Widget.attach(view, document.body);
  await view.ready;
  await settle(60); // coalesced render
  return view;
}

describe('JobView', () => {
  afterEach(() => {
    document.body.textContent = '';
  });

  it('shows the job, its step graph and each step with its log, from the events', async () => {
    const fake = new FakeApi();
    fake.add(twoSteps(), [
      { type: 'step.start', step: 'load', attempt: 1 },
      { type: 'cell.start', step: 'load', cell_index: 1 },
      {
        type: 'cell.output',
        step: 'load',
        output: { output_type: 'stream', name: 'stdout', text: 'rows: 100\n' }
      },
      { type: 'cell.end', step: 'load', cell_index: 1, attempt: 1 },
      { type: 'step.start', step: 'train', attempt: 1 },
      { type: 'cell.end', step: 'train', cell_index: 3, attempt: 1 },
      {
        type: 'cell.output',
        step: 'train',
        output: { output_type: 'stream', name: 'stdout', text: 'epoch 1\n' }
      }
    ]);
    const view = await open(fake);
    const root = view.node;
    expect(root.dataset.testid).toBe('jupyter-ext-job-view');
    expect(root.dataset.job).toBe('j1');
    expect(root.dataset.status).toBe('running');
    expect(view.title.label).toBe('Job: train · lr=0.1 · j1');
    const nodes = Array.from(root.querySelectorAll('[data-testid="jupyter-ext-graph-node"]'));
    expect(
      nodes.map(n => `${n.getAttribute('data-step')}:${n.getAttribute('data-status')}`)
    ).toEqual(['load:succeeded', 'train:running']);
    const trainLog = sel(root, 'jupyter-ext-step-log', '[data-step="train"]')!;
    const rows = () =>
      Array.from(trainLog.querySelectorAll('.jp-ext-LogView-row')).map(r => r.textContent);
    expect(rows()).toEqual(['── attempt 1 started ──', 'epoch 1']);
    expect(view.logOf('load').line(2)).toBe('rows: 100');
    const train = sel(root, 'jupyter-ext-step', '[data-step="train"]')!;
    expect(train.textContent).toContain('1/4 cells');
    expect(train.textContent).toContain('2 GPU · 16Gi memory');
    expect(train.querySelector('[role="progressbar"]')!.getAttribute('aria-valuenow')).toBe('25');
    // Live: more output, then the step and the job end.
    fake.emit('j1', {
      type: 'cell.output',
      step: 'train',
      output: { output_type: 'stream', name: 'stdout', text: 'epoch 2\n' }
    });
    fake.jobs.set('j1', twoSteps('succeeded'));
    fake.emit('j1', { type: 'step.end', step: 'train', status: 'succeeded', ts: 1_790_000_002 });
    fake.emit('j1', { type: 'job.end', status: 'succeeded' });
    await settle(80);
    expect(rows()).toEqual([
      '── attempt 1 started ──',
      'epoch 1',
      'epoch 2',
      '── step succeeded in 2s ──'
    ]);
    expect(root.dataset.status).toBe('succeeded');
    expect(
      root
        .querySelector('[data-step="train"][data-testid="jupyter-ext-graph-node"]')!
        .getAttribute('data-status')
    ).toBe('succeeded');
    expect(sel(root, 'jupyter-ext-cancel')!.hidden).toBe(true);
    view.dispose();
    expect(fake.listeners.get('j1')).toEqual([]); // the stream was closed
  });

  it('fetches the job and its artifacts once on opening, and again only for newer events', async () => {
    const fake = new FakeApi();
    const running = job({ id: 'j1', steps: [step({ name: 'main', status: 'running' })] });
    fake.add(running, [
      { type: 'job.start' },
      { type: 'step.start', step: 'main', attempt: 1 },
      { type: 'artifact', step: 'main', name: 'a.txt' }
    ]);
    running.last_seq = 3; // what the server's job says: it covers the events so far
    const view = await open(fake);
    await settle(20);
    expect(fake.fetches).toEqual(['getJob j1', 'artifacts j1']);
    fake.emit('j1', { type: 'step.end', step: 'main', status: 'succeeded' });
    await settle(60);
    expect(fake.fetches.slice(2).sort()).toEqual(['artifacts j1', 'getJob j1']);
    view.dispose();
  });

  it('cancels a running job', async () => {
    const fake = new FakeApi();
    fake.add(twoSteps());
    const view = await open(fake);
    const cancel = sel(view.node, 'jupyter-ext-cancel') as HTMLButtonElement;
    expect(cancel.hidden).toBe(false);
    cancel.click();
    await settle();
    expect(fake.cancelled).toEqual(['j1']);
    view.dispose();
  });

  it('re-runs the job, or from one step on reusing this one, and opens the new job', async () => {
    const fake = new FakeApi();
    fake.add(twoSteps('failed'));
    const opened: string[] = [];
    const view = await open(fake, 'j1', id => opened.push(id));
    (sel(view.node, 'jupyter-ext-rerun') as HTMLButtonElement).click();
    await settle();
    const rerunFrom = sel(
      view.node,
      'jupyter-ext-rerun-from',
      '[data-step="train"]'
    ) as HTMLButtonElement;
    expect(rerunFrom.hidden).toBe(false);
    rerunFrom.click();
    await settle();
    expect(fake.submitted).toEqual([
      {
        notebook: 'examples/train.ipynb',
        parameters: { lr: 0.1 },
        backend: 'local',
        name: 'train'
      },
      {
        notebook: 'examples/train.ipynb',
        parameters: { lr: 0.1 },
        backend: 'local',
        name: 'train',
        from_step: 'train',
        rerun_of: 'j1'
      }
    ]);
    expect(opened).toEqual(['new1', 'new2']);
    expect(view.node.querySelector('[role="status"]')!.textContent).toBe(
      'Started job new2 from step train.'
    );
    fake.submitError = new ApiError(
      400,
      "from_step: step 'load' failed in job 'j1', so it cannot be reused; re-run from 'load' or an earlier step"
    );
    rerunFrom.click();
    await settle();
    const status = view.node.querySelector('[role="status"]') as HTMLElement;
    expect(status.textContent).toContain("Could not re-run: from_step: step 'load' failed");
    expect(status.classList.contains('jp-mod-error')).toBe(true);
    view.dispose();
  });

  it('offers no re-run for a %%remote cell job, and Re-run from only once the job ended', async () => {
    const fake = new FakeApi();
    fake.add(
      job({
        id: 'c1',
        notebook: '%%remote in work',
        status: 'succeeded',
        steps: [step({ name: 'main', status: 'succeeded' })]
      })
    );
    fake.add({ ...twoSteps(), id: 'j2' });
    const cell = await open(fake, 'c1');
    expect(sel(cell.node, 'jupyter-ext-rerun')!.hidden).toBe(true);
    const running = await open(fake, 'j2');
    expect(sel(running.node, 'jupyter-ext-rerun')!.hidden).toBe(false);
    expect(sel(running.node, 'jupyter-ext-rerun-from', '[data-step="train"]')!.hidden).toBe(true);
    cell.dispose();
    running.dispose();
  });

  it('explains errors in plain words, on the job and on the step', async () => {
    const fake = new FakeApi();
    const oom: IStepError = {
      reason: 'oom',
      message: "the step ran out of memory: raise `memory:` on step 'train'"
    };
    const failed = twoSteps('failed');
    failed.steps[1].error = oom;
    failed.error = { ...oom, step: 'train' };
    fake.add(failed);
    const view = await open(fake);
    const header = view.node.querySelector('.jp-ext-JobView-error') as HTMLElement;
    expect(header.hidden).toBe(false);
    expect(header.textContent).toContain(
      "Step train failed. The step ran out of memory: raise `memory:` on step 'train'. The step needed"
    );
    expect(header.textContent).toContain('needed more memory than it was given');
    const stepError = sel(view.node, 'jupyter-ext-step', '[data-step="train"]')!.querySelector(
      '.jp-ext-StepSection-error'
    ) as HTMLElement;
    expect(stepError.hidden).toBe(false);
    expect(stepError.textContent).toContain('memory:16Gi');
    view.dispose();
  });

  it('shows what the cluster says about a step that waits to be scheduled', async () => {
    const fake = new FakeApi();
    const waiting = twoSteps();
    waiting.steps[1].status = 'queued';
    fake.add(waiting, [
      {
        type: 'log',
        step: 'train',
        stream: 'stderr',
        reason: 'unschedulable',
        text: 'Waiting for a machine. (Kubernetes: FailedScheduling: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.)\n'
      }
    ]);
    const view = await open(fake);
    const list = sel(view.node, 'jupyter-ext-step', '[data-step="train"]')!.querySelector(
      '.jp-ext-StepSection-diagnostics'
    ) as HTMLElement;
    expect(list.hidden).toBe(false);
    expect(list.textContent).toContain('3 Insufficient nvidia.com/gpu');
    expect(list.textContent).toContain('No machine in the cluster can take the step');
    view.dispose();
  });

  it('says which steps a re-run reused instead of running them again', async () => {
    const fake = new FakeApi();
    const rerun = twoSteps();
    rerun.steps[0].reused_from = { job: 'j0', attempt: 1 };
    fake.add(rerun);
    const view = await open(fake);
    const load = sel(view.node, 'jupyter-ext-step', '[data-step="load"]')!;
    expect(load.querySelector('.jp-ext-StepSection-meta')!.textContent).toBe('reused from job j0');
    expect(load.querySelector('.jp-ext-LogView-empty')!.textContent).toBe(
      'Not run again: this re-run reuses its result from job j0.'
    );
    const node = view.node.querySelector(
      '[data-testid="jupyter-ext-graph-node"][data-step="load"]'
    )!;
    expect(node.querySelector('.jp-ext-StepGraph-status')!.textContent).toBe('done (reused)');
    view.dispose();
  });

  it('gives the step header, its log and the panel one duration: the step events’ span', async () => {
    const fake = new FakeApi();
    const T = 1_790_000_000;
    // The rows say 30 s (the server stamps them at submit and after the process exits); the
    // runner's own `duration` says 41.2 s; the step.start -> step.end events say 42 s.
    const finished = job({
      id: 'd1',
      status: 'succeeded',
      steps: [
        step({
          name: 'main',
          status: 'succeeded',
          attempt: 1,
          started: '2026-11-23T05:00:00Z',
          finished: '2026-11-23T05:00:30Z'
        })
      ]
    });
    const running = { ...finished, status: 'running' as const };
    fake.add(running, [
      { type: 'step.start', step: 'main', attempt: 1, ts: T },
      { type: 'cell.end', step: 'main', attempt: 1, cell_index: 0, ts: T + 1 }
    ]);
    const panel = new JobsPanel(fake.client, 60_000);
    Widget.attach(panel, document.body);
    await panel.refresh(); // follows the running job's events
    const view = await open(fake, 'd1');
    fake.jobs.set('d1', finished);
    fake.emit('d1', {
      type: 'step.end',
      step: 'main',
      attempt: 1,
      status: 'succeeded',
      duration: 41.2,
      ts: T + 42
    });
    fake.emit('d1', { type: 'job.end', status: 'succeeded', ts: T + 43 });
    await settle(80);
    await panel.refresh();
    const section = sel(view.node, 'jupyter-ext-step', '[data-step="main"]')!;
    expect(section.querySelector('.jp-ext-StepSection-meta')!.textContent).toContain('42s');
    expect(view.logOf('main').line(view.logOf('main').length - 1)).toBe(
      '── step succeeded in 42s ──'
    );
    const row = panel.node.querySelector('[data-testid="jupyter-ext-step-progress"]')!;
    expect(row.querySelector('.jp-ext-StepProgress-duration')!.textContent).toBe('42s');
    view.dispose();
    panel.dispose();
  });

  it('names the job by what tells it apart: parameters given and a short id', async () => {
    const fake = new FakeApi();
    fake.add(job({ id: '3f2a1c9b8d7e', name: 'hello', parameters: { name: 'Ada', n: 2 } }));
    fake.add(job({ id: '0b1c2d3e4f5a', name: 'hello', parameters: {} }));
    const view = await open(fake, '3f2a1c9b8d7e');
    expect(view.title.label).toBe("Job: hello · name='Ada', n=2 · 3f2a1c");
    expect(sel(view.node, 'jupyter-ext-job-parameters')!.textContent).toBe(
      "Parameters: name = 'Ada', n = 2"
    );
    const plain = await open(fake, '0b1c2d3e4f5a');
    expect(plain.title.label).toBe('Job: hello · 0b1c2d');
    expect(sel(plain.node, 'jupyter-ext-job-parameters')!.textContent).toMatch(/none changed/);
    const panel = new JobsPanel(fake.client, 60_000);
    await panel.refresh();
    const details = Array.from(
      panel.node.querySelectorAll('[data-testid="jupyter-ext-job-details"]')
    ).map(n => n.textContent);
    expect(details).toEqual(["name='Ada', n=2 · 3f2a1c", '0b1c2d']);
    view.dispose();
    plain.dispose();
    panel.dispose();
  });

  it('asks before a re-run, runs it with the values confirmed, and hands it to the notebook', async () => {
    const fake = new FakeApi();
    fake.add(twoSteps('failed'));
    const asked: [string, string | null][] = [];
    let answer: any = null;
    const reruns: [string, string][] = [];
    const view = await open(fake, 'j1', undefined, {
      confirmRerun: async (j, from) => {
        asked.push([j.id, from]);
        return answer;
      },
      onRerun: (created, of) => reruns.push([created.id, of.id])
    });
    (sel(view.node, 'jupyter-ext-rerun') as HTMLButtonElement).click();
    await settle();
    expect(asked).toEqual([['j1', null]]);
    expect(fake.submitted).toEqual([]); // cancelled in the dialog: nothing submitted
    answer = { parameters: { lr: 0.5 }, backend: 'local' };
    (sel(view.node, 'jupyter-ext-rerun-from', '[data-step="train"]') as HTMLButtonElement).click();
    await settle();
    expect(asked[1]).toEqual(['j1', 'train']);
    expect(fake.submitted).toEqual([
      {
        notebook: 'examples/train.ipynb',
        parameters: { lr: 0.5 },
        backend: 'local',
        name: 'train',
        from_step: 'train',
        rerun_of: 'j1'
      }
    ]);
    expect(reruns).toEqual([['new1', 'j1']]);
    view.dispose();
  });

  it('says when the job cannot be loaded', async () => {
    const view = await open(new FakeApi(), 'gone');
    expect(view.node.querySelector('[role="status"]')!.textContent).toBe(
      'Could not load job gone: no job gone'
    );
    view.dispose();
  });

  it('describes resources briefly', () => {
    expect(resourcesText(step({ name: 'a' }))).toBe('');
    expect(
      resourcesText(
        step({
          name: 'a',
          resources: { gpu: 1, memory: '2Gi', cpu: '500m', image: 'py:3', extra_limits: {} }
        })
      )
    ).toBe('1 GPU · 2Gi memory · 500m CPU · image py:3');
  });
});
