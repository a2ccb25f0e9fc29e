import { Widget } from '@lumino/widgets';
import { ApiError, JupyterExtClient, MakeRequest } from '../client';
import { browserTimeZone, cronProblem, describeCron, isTimeZone, relativeTime } from '../crontext';
import { JobsPanel } from '../panel';
import { ScheduleDialogBody, submitSchedule } from '../scheduleform';
import { nextRunText, SchedulesSection, snapshotNote } from '../schedules';
import { IParameter, IPlan, ISchedule } from '../tokens';
import { reply, settings } from './transport';

const NOW = Date.parse('2026-11-23T10:00:00Z');
const HOUR = 3600;

function schedule(over: Partial<ISchedule> = {}): ISchedule {
  return {
    id: 's1',
    name: 'nightly',
    notebook: 'examples/train.ipynb',
    cron: '0 2 * * *',
    timezone: 'Europe/Berlin',
    paused: false,
    parameters: {},
    sweep: null,
    sweep_mode: null,
    backend: 'local',
    fresh: false,
    created: '2026-11-20T08:00:00Z',
    snapshot_taken: '2026-11-22T08:00:00Z',
    next_run: NOW / 1000 + 3 * HOUR,
    next_run_iso: '2026-11-23T14:00:00+01:00',
    runs: [],
    ...over
  };
}

/** A transport answering like the server, recording each request (method, path, body). */
function server(answers: { [route: string]: (body: any) => Response }) {
  const calls: { method: string; path: string; body: any }[] = [];
  const makeRequest: MakeRequest = async (url, init) => {
    const path = url.replace('http://host/base/jupyter-ext/api/', '').split('?')[0];
    const method = init.method ?? 'GET';
    const body = init.body === undefined ? undefined : JSON.parse(String(init.body));
    calls.push({ method, path, body });
    const answer = answers[`${method} ${path}`];
    return answer ? answer(body) : reply(404, { message: `no route ${method} ${path}` });
  };
  return { calls, client: new JupyterExtClient(settings, makeRequest) };
}

const tick = () => new Promise(resolve => setTimeout(resolve, 0));

function q<T extends HTMLElement = HTMLElement>(root: HTMLElement, testid: string): T[] {
  return Array.from(root.querySelectorAll<T>(`[data-testid="${testid}"]`));
}

describe('cron and times in words', () => {
  it('says the common expressions in words and leaves the rest to the expression', () => {
    expect(describeCron('0 2 * * *')).toBe('every day at 02:00');
    expect(describeCron('0 * * * *')).toBe('every hour at :00');
    expect(describeCron('0 2 * * 1')).toBe('every Monday at 02:00');
    expect(describeCron('30 9 * * 1-5')).toBe('every Monday to Friday at 09:30');
    expect(describeCron('0 8,20 * * *')).toBe('every day at 08:00 and 20:00');
    expect(describeCron('*/15 * * * *')).toBe('every 15 minutes');
    expect(describeCron('* * * * *')).toBe('every minute');
    expect(describeCron('5 */2 * * 0,6')).toBe('every 2 hours at :05 on Sunday and Saturday');
    expect(describeCron('0 3 1 * *')).toBe('on the 1st of every month at 03:00');
    expect(describeCron('0 0 22 11 *')).toBe('every year on 22 November at 00:00');
    expect(describeCron('@daily')).toBe('every day at 00:00');
    expect(describeCron('0 2 1-7 * 1')).toBeNull();
    expect(describeCron('0 2 * *')).toBeNull();
  });

  it('checks an expression and a time zone before the server does', () => {
    expect(cronProblem('0 2 * * *')).toBeNull();
    expect(cronProblem('@hourly')).toBeNull();
    expect(cronProblem('0 2 * *')).toContain('five fields');
    expect(cronProblem(' ')).toContain('give an expression');
    expect(isTimeZone('Europe/Berlin')).toBe(true);
    expect(isTimeZone('UTC')).toBe(true);
    expect(isTimeZone('Mars/Olympus')).toBe(false);
    expect(isTimeZone(browserTimeZone())).toBe(true);
  });

  it('says how far a time is', () => {
    expect(relativeTime(NOW + 3 * HOUR * 1000, NOW)).toBe('in 3 h');
    expect(relativeTime(NOW + 200 * 60 * 1000, NOW)).toBe('in 3 h 20 min');
    expect(relativeTime(NOW + 12 * 60 * 1000, NOW)).toBe('in 12 min');
    expect(relativeTime(NOW + 20 * 1000, NOW)).toBe('in under a minute');
    expect(relativeTime(NOW + 30 * HOUR * 1000, NOW)).toBe('in 30 h');
    expect(relativeTime(NOW + 5 * 24 * HOUR * 1000, NOW)).toBe('in 5 d');
    expect(relativeTime(NOW - 5 * 60 * 1000, NOW)).toBe('5 min ago');
    expect(relativeTime(NOW - 10 * 1000, NOW)).toBe('just now');
  });
});

describe('JupyterExtClient schedules', () => {
  it('lists, makes, changes and deletes schedules on the schedules routes', async () => {
    const { calls, client } = server({
      'GET schedules': () => reply(200, { schedules: [schedule()] }),
      'POST schedules': body => reply(201, schedule({ cron: body.cron })),
      'PATCH schedules/s%201': body => reply(200, schedule({ paused: !!body.paused })),
      'DELETE schedules/s%201': () => reply(204, undefined)
    });
    expect((await client.schedules()).map(s => s.id)).toEqual(['s1']);
    const made = await client.createSchedule({
      notebook: 'a.ipynb',
      cron: '0 * * * *',
      timezone: 'UTC'
    });
    expect(made.cron).toBe('0 * * * *');
    expect((await client.updateSchedule('s 1', { paused: true })).paused).toBe(true);
    await client.updateSchedule('s 1', { snapshot: true });
    await client.deleteSchedule('s 1');
    expect(calls).toEqual([
      { method: 'GET', path: 'schedules', body: undefined },
      {
        method: 'POST',
        path: 'schedules',
        body: { notebook: 'a.ipynb', cron: '0 * * * *', timezone: 'UTC' }
      },
      { method: 'PATCH', path: 'schedules/s%201', body: { paused: true } },
      { method: 'PATCH', path: 'schedules/s%201', body: { snapshot: true } },
      { method: 'DELETE', path: 'schedules/s%201', body: undefined }
    ]);
  });

  it('answers what the server refused with the field it names', async () => {
    const { client } = server({
      'POST schedules': () =>
        reply(400, { message: "cron: '61 * * * *' is not valid", reason: 'invalid', field: 'cron' })
    });
    const err = await client
      .createSchedule({ notebook: 'a.ipynb', cron: '61 * * * *' })
      .catch(e => e);
    expect(err).toBeInstanceOf(ApiError);
    expect([err.status, err.field, err.message]).toEqual([
      400,
      'cron',
      "cron: '61 * * * *' is not valid"
    ]);
  });
});

describe('SchedulesSection', () => {
  function section(list: ISchedule[], over: Partial<JupyterExtClient> = {}) {
    const calls: string[] = [];
    let current = list;
    const client = {
      schedules: async () => current,
      updateSchedule: async (id: string, patch: any) => {
        calls.push(`PATCH ${id} ${JSON.stringify(patch)}`);
        const found = current.find(s => s.id === id)!;
        const updated = {
          ...found,
          ...(patch.paused !== undefined ? { paused: patch.paused } : {})
        };
        if (patch.paused) {
          updated.next_run = null;
        }
        current = current.map(s => (s.id === id ? updated : s));
        return updated;
      },
      deleteSchedule: async (id: string) => {
        calls.push(`DELETE ${id}`);
        current = current.filter(s => s.id !== id);
      },
      ...over
    } as unknown as JupyterExtClient;
    const view = new SchedulesSection(client, async () => true);
    view.now = () => NOW;
    return { view, calls };
  }

  it('shows each schedule: notebook, cron in words with its zone, next run, runs, snapshot note', async () => {
    const { view } = section([
      schedule({
        parameters: { epochs: 3 },
        runs: [
          {
            due: '2026-11-23T01:00:00Z',
            fired: '2026-11-23T01:00:01Z',
            job: 'j2',
            status: 'failed',
            error: null
          },
          {
            due: '2026-11-22T01:00:00Z',
            fired: '2026-11-22T01:00:00Z',
            job: 'j1',
            status: 'succeeded',
            error: null
          },
          {
            due: '2026-11-21T01:00:00Z',
            fired: null,
            job: null,
            status: null,
            error: 'the snapshot is gone'
          }
        ]
      }),
      schedule({
        id: 's2',
        name: 'weekly',
        cron: '7 3 * * 1',
        paused: true,
        next_run: null,
        fresh: true
      })
    ]);
    await view.refresh();
    const node = view.node;
    expect(node.dataset.testid).toBe('jupyter-ext-schedules');
    const rows = q(node, 'jupyter-ext-schedule');
    expect(rows.map(r => [r.dataset.schedule, r.dataset.paused])).toEqual([
      ['s1', 'false'],
      ['s2', 'true']
    ]);
    const [active, paused] = rows;
    expect(active.textContent).toContain('nightly');
    expect(active.textContent).toContain('examples/train.ipynb');
    expect(active.textContent).toContain('epochs=3');
    expect(q(active, 'jupyter-ext-schedule-when')[0].textContent).toBe(
      'every day at 02:00 · Europe/Berlin · 0 2 * * *'
    );
    const next = q(active, 'jupyter-ext-schedule-next')[0];
    expect(next.textContent).toMatch(/^Next run .+ · in 3 h$/);
    expect(next.dataset.next).toBe('2026-11-23T13:00:00.000Z');
    expect(next.title).toContain('2026-11-23T14:00:00+01:00 in Europe/Berlin');
    const dots = q(active, 'jupyter-ext-schedule-run');
    expect(dots.map(d => [d.tagName, d.dataset.status, d.dataset.job])).toEqual([
      ['BUTTON', 'failed', 'j2'],
      ['BUTTON', 'succeeded', 'j1'],
      ['SPAN', 'error', undefined]
    ]);
    expect(dots[2].title).toContain('the snapshot is gone');
    expect(dots[0].getAttribute('aria-label')).toContain('failed (job j2)');
    const opened: string[] = [];
    view.jobActivated.connect((_, id) => opened.push(id));
    dots[1].click();
    expect(opened).toEqual(['j1']);
    expect(q(active, 'jupyter-ext-schedule-snapshot')[0].textContent).toMatch(
      /^Runs use a snapshot of the notebook taken .+ \(26 h ago\); editing the notebook does not change them until you update the snapshot\.$/
    );
    expect(q(active, 'jupyter-ext-schedule-pause')).toHaveLength(1);
    expect(q(active, 'jupyter-ext-schedule-paused')).toHaveLength(0);

    expect(q(active, 'jupyter-ext-schedule-fresh')).toHaveLength(0);
    expect(q(paused, 'jupyter-ext-schedule-fresh')[0].textContent).toBe(' · fresh');
    expect(q(paused, 'jupyter-ext-schedule-paused')[0].textContent).toBe('paused');
    expect(q(paused, 'jupyter-ext-schedule-next')[0].textContent).toBe('Paused: no next run');
    expect(q(paused, 'jupyter-ext-schedule-when')[0].textContent).toBe(
      'every Monday at 03:07 · Europe/Berlin · 7 3 * * 1'
    );
    expect(q(paused, 'jupyter-ext-schedule-runs')[0].textContent).toBe('No runs yet');
    expect(q(paused, 'jupyter-ext-schedule-resume')).toHaveLength(1);
    expect(q(paused, 'jupyter-ext-schedule-pause')).toHaveLength(0);
  });

  it('says a run is due now, an expression it has no words for, and that there are none', async () => {
    expect(nextRunText(schedule({ next_run: NOW / 1000 - 5 }), NOW)).toMatch(/ · due now$/);
    expect(snapshotNote(schedule({ snapshot_taken: null, created: '' }), NOW)).toContain(
      'taken when it was made'
    );
    const { view } = section([schedule({ cron: '0 2 1-7 * 1' })]);
    await view.refresh();
    expect(q(view.node, 'jupyter-ext-schedule-when')[0].textContent).toBe(
      'cron 0 2 1-7 * 1 · Europe/Berlin · 0 2 1-7 * 1'
    );
    const empty = section([]).view;
    await empty.refresh();
    expect(q(empty.node, 'jupyter-ext-schedules-empty')[0].textContent).toContain(
      'jupyter-ext schedule add'
    );
  });

  it('pauses, resumes, updates the snapshot and deletes (after asking), then refreshes', async () => {
    const { view, calls } = section([schedule()]);
    const saved: string[] = [];
    view.beforeSnapshot = async s => {
      saved.push(s.notebook);
    };
    await view.refresh();
    q<HTMLButtonElement>(view.node, 'jupyter-ext-schedule-pause')[0].click();
    await tick();
    await view.refresh();
    const row = q(view.node, 'jupyter-ext-schedule')[0];
    expect(row.dataset.paused).toBe('true');
    expect(q(row, 'jupyter-ext-schedule-next')[0].textContent).toBe('Paused: no next run');
    await view.resume(view.shown[0]);
    expect(q(view.node, 'jupyter-ext-schedule')[0].dataset.paused).toBe('false');
    await view.updateSnapshot(view.shown[0]);
    expect(saved).toEqual(['examples/train.ipynb']);
    let asked = 0;
    view.confirmDelete = async () => {
      asked += 1;
      return asked > 1; // no the first time, yes the second
    };
    await view.remove(view.shown[0]);
    expect(view.shown).toHaveLength(1);
    await view.remove(view.shown[0]);
    expect(view.shown).toHaveLength(0);
    expect(calls).toEqual([
      'PATCH s1 {"paused":true}',
      'PATCH s1 {"paused":false}',
      'PATCH s1 {"snapshot":true}',
      'DELETE s1'
    ]);
  });

  it('says in words why the list or an action failed', async () => {
    const failing = section([], {
      schedules: async () => {
        throw new ApiError(500, 'the store is locked');
      }
    } as any).view;
    await failing.refresh();
    const status = q(failing.node, 'jupyter-ext-schedules-error')[0];
    expect(status.getAttribute('role')).toBe('status');
    expect(status.hidden).toBe(false);
    expect(status.textContent).toBe('Could not list schedules: the store is locked');

    const { view } = section([schedule()], {
      updateSchedule: async () => {
        throw new ApiError(404, "no schedule 's1'");
      }
    } as any);
    await view.refresh();
    await view.pause(view.shown[0]);
    expect(q(view.node, 'jupyter-ext-schedules-error')[0].textContent).toBe(
      "Could not pause nightly: no schedule 's1'"
    );
    expect(q(view.node, 'jupyter-ext-schedule')).toHaveLength(1);
  });

  it('folds, and stays in the Jobs panel across its redraws, refreshed with it', async () => {
    let listed = 0;
    const client = {
      listJobs: async () => [],
      schedules: async () => {
        listed += 1;
        return [schedule()];
      }
    } as unknown as JupyterExtClient;
    const panel = new JobsPanel(client);
    const view = new SchedulesSection(client, async () => true);
    panel.addSection(view);
    await panel.refresh();
    await view.refresh();
    expect(listed).toBeGreaterThanOrEqual(1);
    panel.render();
    expect(panel.node.contains(view.node)).toBe(true);
    expect(panel.node.lastElementChild).toBe(view.node);
    const toggle = q<HTMLButtonElement>(view.node, 'jupyter-ext-schedules-toggle')[0];
    expect(toggle.getAttribute('aria-expanded')).toBe('true');
    expect(toggle.textContent).toContain('Schedules');
    toggle.click();
    expect(view.isExpanded).toBe(false);
    expect((view.node.querySelector('.jp-ext-Schedules-body') as HTMLElement).hidden).toBe(true);
    await view.reveal('s1');
    expect(view.isExpanded).toBe(true);
    expect(q(view.node, 'jupyter-ext-schedule')[0].classList).toContain('jp-mod-highlight');
  });
});

const param = (over: Partial<IParameter>): IParameter => ({
  name: 'epochs',
  value: 3,
  literal: true,
  default: '3',
  type: 'int',
  help: '',
  cell: 0,
  ...over
});

const PLAN: IPlan = {
  notebook: 'train.ipynb',
  backend: 'local',
  steps: [],
  parameters: [param({}), param({ name: 'lr', value: 0.1, default: '0.1', type: 'float' })],
  warnings: [],
  single: true,
  error: null
};

function dialogServer(post: (body: any) => Response) {
  return server({
    'GET info': () =>
      reply(200, { version: '0', backends: ['local'], default_backend: 'local', user: 'ada' }),
    'POST plan': () => reply(200, PLAN),
    'POST schedules': post
  });
}

function input(body: Widget, testid: string): HTMLInputElement {
  return q<HTMLInputElement>(body.node, testid)[0];
}

function type(box: HTMLInputElement | HTMLSelectElement, value: string): void {
  box.value = value;
  box.dispatchEvent(new Event('input', { bubbles: true }));
}

function fieldError(body: Widget, field: string): HTMLElement {
  return q(body.node, 'jupyter-ext-schedule-error').find(e => e.dataset.field === field)!;
}

describe('ScheduleDialogBody', () => {
  it('starts daily at 02:00 in the browser zone; presets and a custom expression set the cron', async () => {
    const { client } = dialogServer(() => reply(500, {}));
    const body = new ScheduleDialogBody(client, 'nb/train.ipynb');
    Widget.attach(body, document.body);
    await body.ready;
    const cron = input(body, 'jupyter-ext-schedule-cron');
    const preset = q<HTMLSelectElement>(body.node, 'jupyter-ext-schedule-preset')[0];
    expect(cron.value).toBe('0 2 * * *');
    expect(preset.value).toBe('0 2 * * *');
    expect(Array.from(preset.options).map(o => o.textContent)).toEqual([
      'Hourly',
      'Daily at 02:00',
      'Weekly, Monday at 02:00',
      'Custom (cron expression)'
    ]);
    expect(q(body.node, 'jupyter-ext-schedule-words')[0].textContent).toBe(
      'Runs every day at 02:00.'
    );
    expect(input(body, 'jupyter-ext-schedule-timezone').value).toBe(browserTimeZone());
    expect(input(body, 'jupyter-ext-schedule-name').value).toBe('train');
    expect(q(body.node, 'jupyter-ext-schedule-dialog-note')[0].textContent).toContain(
      'editing the notebook later does not change them until you update the snapshot'
    );
    type(preset, '0 2 * * 1');
    expect(cron.value).toBe('0 2 * * 1');
    type(preset, '0 * * * *');
    expect(cron.value).toBe('0 * * * *');
    type(cron, '30 9 * * 1-5');
    expect(preset.value).toBe('custom');
    expect(q(body.node, 'jupyter-ext-schedule-words')[0].textContent).toBe(
      'Runs every Monday to Friday at 09:30.'
    );
    type(input(body, 'jupyter-ext-schedule-timezone'), 'America/New_York');
    type(input(body, 'jupyter-ext-param'), '7');
    expect(body.getValue()).toEqual({
      notebook: 'nb/train.ipynb',
      cron: '30 9 * * 1-5',
      timezone: 'America/New_York',
      name: 'train',
      backend: 'local',
      parameters: { epochs: 7 }
    });
    Widget.detach(body);
  });

  it('passes a sweep and "Ignore cached results" (fresh) from the Run part on', async () => {
    const { client } = dialogServer(() => reply(500, {}));
    const body = new ScheduleDialogBody(client, 'train.ipynb');
    Widget.attach(body, document.body);
    await body.ready;
    q<HTMLButtonElement>(body.node, 'jupyter-ext-sweep-add')[0].click();
    type(input(body, 'jupyter-ext-sweep-values'), '1, 2');
    const fresh = q<HTMLInputElement>(body.node, 'jupyter-ext-submit-fresh');
    expect(fresh).toHaveLength(1);
    expect(fresh[0].closest('label')!.textContent).toContain('Ignore cached results');
    expect(body.getValue()).not.toHaveProperty('fresh');
    fresh[0].checked = true;
    const spec = body.getValue();
    expect(spec).toMatchObject({ sweep: { epochs: [1, 2] }, parameters: {}, fresh: true });
    Widget.detach(body);
  });

  it('blocks Schedule while the expression or the zone is wrong, saying why under them', async () => {
    const { client } = dialogServer(() => reply(500, {}));
    const body = new ScheduleDialogBody(client, 'train.ipynb');
    Widget.attach(body, document.body);
    await body.ready;
    await tick();
    expect(body.node.querySelector('.jp-mod-error')).toBeNull();
    type(input(body, 'jupyter-ext-schedule-cron'), '0 2 * *');
    expect(fieldError(body, 'cron').hidden).toBe(false);
    expect(fieldError(body, 'cron').textContent).toContain('five fields');
    expect(input(body, 'jupyter-ext-schedule-cron').classList).toContain('jp-mod-error');
    expect(() => body.getValue()).toThrow('five fields');
    type(input(body, 'jupyter-ext-schedule-cron'), '0 2 * * *');
    type(input(body, 'jupyter-ext-schedule-timezone'), 'Mars/Olympus');
    expect(fieldError(body, 'cron').hidden).toBe(true);
    expect(fieldError(body, 'timezone').textContent).toContain('Mars/Olympus is not a time zone');
    expect(body.node.querySelector('.jp-mod-error')).not.toBeNull();
    Widget.detach(body);
  });

  it('shows what the server refused next to the field it names, until that field changes', async () => {
    const { client } = dialogServer(() => reply(500, {}));
    const body = new ScheduleDialogBody(client, 'train.ipynb');
    Widget.attach(body, document.body);
    await body.ready;
    body.showServerError(new ApiError(400, 'cron: 61 is not a minute', { field: 'cron' }));
    expect(fieldError(body, 'cron').textContent).toBe('cron: 61 is not a minute');
    expect(body.node.querySelector('.jp-mod-error')).not.toBeNull();
    type(input(body, 'jupyter-ext-schedule-cron'), '0 3 * * *');
    expect(fieldError(body, 'cron').hidden).toBe(true);
    body.showServerError(
      new ApiError(400, 'parameters.epochs: too large', { field: 'parameters.epochs' })
    );
    const paramError = q(body.node, 'jupyter-ext-submit-error').find(
      e => e.dataset.param === 'epochs'
    )!;
    expect([paramError.hidden, paramError.textContent]).toEqual([
      false,
      'parameters.epochs: too large'
    ]);
    body.showServerError(new ApiError(400, 'backend: no backend gpu', { field: 'backend' }));
    expect(fieldError(body, '').textContent).toBe('backend: no backend gpu');
    expect(fieldError(body, '').hidden).toBe(false);
    Widget.detach(body);
  });
});

describe('submitSchedule', () => {
  it('POSTs what the dialog says; a refusal is shown at its field and nothing is answered', async () => {
    let posts = 0;
    const { calls, client } = dialogServer(body => {
      posts += 1;
      return posts === 1
        ? reply(400, { message: 'timezone: unknown zone', reason: 'invalid', field: 'timezone' })
        : reply(201, schedule({ id: 'new', cron: body.cron, timezone: body.timezone }));
    });
    const body = new ScheduleDialogBody(client, 'train.ipynb');
    Widget.attach(body, document.body);
    await body.ready;
    type(input(body, 'jupyter-ext-schedule-timezone'), 'UTC');
    expect(await submitSchedule(client, body)).toBeNull();
    expect(fieldError(body, 'timezone').textContent).toBe('timezone: unknown zone');
    expect(body.node.querySelector('.jp-mod-error')).not.toBeNull();
    type(input(body, 'jupyter-ext-schedule-timezone'), 'Etc/UTC');
    expect(fieldError(body, 'timezone').hidden).toBe(true);
    q<HTMLInputElement>(body.node, 'jupyter-ext-submit-fresh')[0].checked = true;
    expect((await submitSchedule(client, body))?.id).toBe('new');
    const bodies = calls.filter(c => c.path === 'schedules').map(c => c.body);
    const sent = { notebook: 'train.ipynb', cron: '0 2 * * *', name: 'train', backend: 'local' };
    expect(bodies).toEqual([
      { ...sent, timezone: 'UTC', parameters: {} },
      { ...sent, timezone: 'Etc/UTC', parameters: {}, fresh: true }
    ]);
    // A local problem is not sent.
    type(input(body, 'jupyter-ext-schedule-cron'), 'nightly');
    expect(await submitSchedule(client, body)).toBeNull();
    expect(calls.filter(c => c.path === 'schedules')).toHaveLength(2);
    Widget.detach(body);
  });
});
