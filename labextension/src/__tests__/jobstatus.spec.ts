import { JOB_STATUS_MIME, jobStatusFactory } from '../jobstatus';

function model(data: object): any {
  return { data: { [JOB_STATUS_MIME]: data }, metadata: {}, trusted: false };
}

describe('the %%remote status line', () => {
  it('shows state, elapsed and cells, and cancels through the API while running', async () => {
    const cancelled: string[] = [];
    const renderer = jobStatusFactory(async job => cancelled.push(job)).createRenderer(
      {} as any
    ) as any;
    await renderer.renderModel(model({ job: 'j1', state: 'running', elapsed: 12.4, cells: 3 }));
    expect(renderer.node.textContent).toContain('job j1: running · 12s · 3 cell(s) done');
    const button = renderer.node.querySelector('button') as HTMLButtonElement;
    expect(button.hidden).toBe(false);
    button.click();
    await new Promise(r => setTimeout(r, 0));
    expect(cancelled).toEqual(['j1']);
    expect(button.disabled).toBe(true);
  });

  it('hides Cancel once the job ended or when there is no server', async () => {
    const renderer = jobStatusFactory(async () => undefined).createRenderer({} as any) as any;
    await renderer.renderModel(model({ job: 'j1', state: 'succeeded', elapsed: 1, cells: 1 }));
    expect((renderer.node.querySelector('button') as HTMLButtonElement).hidden).toBe(true);
    await renderer.renderModel(
      model({ job: 'j2', state: 'running', elapsed: 1, cells: 0, cancellable: false })
    );
    expect((renderer.node.querySelector('button') as HTMLButtonElement).hidden).toBe(true);
  });

  it('says when cancelling failed and lets the user try again', async () => {
    const renderer = jobStatusFactory(async () => {
      throw new Error('403 Forbidden');
    }).createRenderer({} as any) as any;
    await renderer.renderModel(model({ job: 'j1', state: 'running', elapsed: 1, cells: 0 }));
    const button = renderer.node.querySelector('button') as HTMLButtonElement;
    button.click();
    await new Promise(r => setTimeout(r, 0));
    expect(button.textContent).toBe('Cancel failed');
    expect(button.title).toBe('403 Forbidden');
    expect(button.disabled).toBe(false);
  });
});
