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

  it('hides Cancel even where a stylesheet sets display on buttons (as Lab does)', async () => {
    const style = document.createElement('style');
    style.textContent = '.jp-Button { display: flex; }';
    document.head.appendChild(style);
    try {
      const renderer = jobStatusFactory(async () => undefined).createRenderer({} as any) as any;
      document.body.appendChild(renderer.node);
      const button = renderer.node.querySelector('button') as HTMLButtonElement;
      await renderer.renderModel(model({ job: 'j1', state: 'running', elapsed: 1, cells: 0 }));
      expect(getComputedStyle(button).display).toBe('flex');
      await renderer.renderModel(model({ job: 'j1', state: 'succeeded', elapsed: 2, cells: 1 }));
      expect(getComputedStyle(button).display).toBe('none');
      renderer.node.remove();
    } finally {
      style.remove();
    }
  });

  it('says the job had already finished when Cancel is clicked after it ended', async () => {
    const renderer = jobStatusFactory(async job => ({
      id: job,
      status: 'succeeded'
    })).createRenderer({} as any) as any;
    // the line still says running (the kernel's last update came before the job ended)
    await renderer.renderModel(model({ job: 'j1', state: 'running', elapsed: 5, cells: 0 }));
    const button = renderer.node.querySelector('button') as HTMLButtonElement;
    button.click();
    await new Promise(r => setTimeout(r, 0));
    expect(renderer.node.textContent).toContain('job j1: succeeded (it had already finished');
    expect(renderer.node.textContent).not.toContain('Cancelling');
    expect(button.style.display).toBe('none');
    // a late update from the kernel of the same job does not bring the button back
    await renderer.renderModel(model({ job: 'j1', state: 'running', elapsed: 6, cells: 0 }));
    expect(button.style.display).toBe('none');
    expect(renderer.node.textContent).toContain('succeeded');
  });

  it('keeps saying Cancelling while a running job is being cancelled', async () => {
    const renderer = jobStatusFactory(async job => ({ id: job, status: 'running' })).createRenderer(
      {} as any
    ) as any;
    await renderer.renderModel(model({ job: 'j1', state: 'running', elapsed: 5, cells: 0 }));
    const button = renderer.node.querySelector('button') as HTMLButtonElement;
    button.click();
    await new Promise(r => setTimeout(r, 0));
    expect(button.textContent).toBe('Cancelling…');
    await renderer.renderModel(model({ job: 'j1', state: 'cancelled', elapsed: 6, cells: 0 }));
    expect(button.style.display).toBe('none');
  });
});
