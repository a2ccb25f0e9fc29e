import { Widget } from '@lumino/widgets';
import { JupyterExtClient, MakeRequest } from '../client';
import { CellBar } from '../cellchips';
import { StepEditorBody } from '../stepeditor';
import { parameterText, parseParameter, stepResources, SubmitDialogBody } from '../submitdialog';
import { analyzeNotebook, INotebookCell } from '../tagmodel';
import { IParameter, IPlan } from '../tokens';
import { reply, settings } from './transport';

/** A transport answering info and plan like the server does, recording each request. */
function server(plans: { [backend: string]: IPlan }) {
  const calls: { url: string; init: RequestInit }[] = [];
  const makeRequest: MakeRequest = async (url, init) => {
    calls.push({ url, init });
    if (url.endsWith('/info')) {
      return reply(200, {
        version: '0.1.0',
        backends: Object.keys(plans),
        default_backend: 'local',
        user: 'ada'
      });
    }
    const body = JSON.parse(String(init.body));
    return reply(200, plans[body.backend]);
  };
  return { calls, client: new JupyterExtClient(settings, makeRequest) };
}

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

function plan(over: Partial<IPlan> = {}): IPlan {
  return {
    notebook: 'ui_demo.ipynb',
    backend: 'local',
    steps: [
      {
        name: 'train',
        after: ['load'],
        cells: [{ index: 2, id: 'c2' }],
        resources: { gpu: 2, memory: '16Gi', cpu: '4', image: 'img:1', extra_limits: {} },
        timeout: 7200,
        retries: 1
      }
    ],
    parameters: [
      param({}),
      param({ name: 'lr', value: 1, default: '1.0', type: 'float' }),
      param({ name: 'title', value: 'x', default: "'x'", type: 'str' }),
      param({
        name: 'start',
        value: null,
        literal: false,
        default: 'time.time()',
        type: 'expression'
      })
    ],
    warnings: [],
    single: false,
    error: null,
    ...over
  };
}

async function settle(body: SubmitDialogBody) {
  await body.ready;
  await new Promise(r => setTimeout(r, 0));
}

describe('parameters', () => {
  it('show their defaults and read typed values back', () => {
    expect(parameterText(param({}))).toBe('3');
    expect(parameterText(param({ value: 1, type: 'float' }))).toBe('1.0');
    expect(parameterText(param({ value: true, type: 'bool' }))).toBe('True');
    expect(parameterText(param({ value: null, type: 'None' }))).toBe('None');
    expect(parameterText(param({ literal: false, value: null, default: 'f()' }))).toBe('f()');
    expect(parseParameter(param({}), ' 12 ')).toEqual({ value: 12 });
    expect(parseParameter(param({}), '1.5').error).toBe(
      "epochs: '1.5' is not a whole number; use e.g. 3"
    );
    expect(parseParameter(param({ type: 'float' }), '1e-3')).toEqual({ value: 0.001 });
    expect(parseParameter(param({ type: 'bool' }), 'false')).toEqual({ value: false });
    expect(parseParameter(param({ type: 'str' }), ' a b ')).toEqual({ value: ' a b ' });
    expect(parseParameter(param({ type: 'list', value: [1] }), '[1, 2]')).toEqual({
      value: [1, 2]
    });
    expect(parseParameter(param({ type: 'list', value: [1] }), '[1,').error).toContain(
      'is not a list value'
    );
    expect(parseParameter(param({ type: 'None', value: null }), 'None')).toEqual({ value: null });
    expect(parseParameter(param({ type: 'None', value: null }), 'abc')).toEqual({ value: 'abc' });
  });

  it('summarise a step’s resources', () => {
    expect(stepResources(plan().steps[0])).toBe('2 GPU · 16Gi memory · 4 CPU · image img:1');
  });
});

describe('SubmitDialogBody', () => {
  it('shows the backend, steps and prefilled parameters, and answers only changed ones', async () => {
    const { calls, client } = server({
      local: plan(),
      kubernetes: plan({ backend: 'kubernetes' })
    });
    const body = new SubmitDialogBody(client, 'ui_demo.ipynb');
    Widget.attach(body, document.body);
    await settle(body);
    const node = body.node;
    expect(node.dataset.testid).toBe('jupyter-ext-submit-dialog');
    const select = node.querySelector<HTMLSelectElement>(
      '[data-testid="jupyter-ext-submit-backend"]'
    )!;
    expect(Array.from(select.options).map(o => o.value)).toEqual(['local', 'kubernetes']);
    const row = node.querySelector<HTMLElement>('[data-testid="jupyter-ext-submit-step"]')!;
    expect(row.dataset.step).toBe('train');
    expect(row.textContent).toContain('2 GPU · 16Gi memory · 4 CPU · image img:1');
    expect(row.textContent).toContain('after load');
    const inputs = Array.from(
      node.querySelectorAll<HTMLInputElement>('[data-testid="jupyter-ext-param"]')
    );
    expect(inputs.map(i => `${i.dataset.param}=${i.value}`)).toEqual([
      'epochs=3',
      'lr=1.0',
      'title=x',
      'start=time.time()'
    ]);
    expect(body.getValue().parameters).toEqual({});
    inputs[0].value = '7';
    inputs[2].value = 'y';
    expect(body.getValue()).toMatchObject({
      backend: 'local',
      parameters: { epochs: 7, title: 'y' }
    });
    expect(calls[1].url).toBe('http://host/base/jupyter-ext/api/plan');
    expect(calls[1].init.method).toBe('POST');
    expect(JSON.parse(String(calls[1].init.body))).toEqual({
      notebook: 'ui_demo.ipynb',
      backend: 'local'
    });

    // A bad value shows under its input and blocks Run (the dialog disables it on .jp-mod-error).
    inputs[0].value = 'seven';
    inputs[0].dispatchEvent(new Event('input', { bubbles: true }));
    const error = node.querySelector<HTMLElement>(
      '[data-testid="jupyter-ext-submit-error"][data-param="epochs"]'
    )!;
    expect(error.hidden).toBe(false);
    expect(error.textContent).toBe("epochs: 'seven' is not a whole number; use e.g. 3");
    expect(node.querySelector('.jp-mod-error')).not.toBeNull();
    expect(() => body.getValue()).toThrow('is not a whole number');

    // Another backend is planned again.
    select.value = 'kubernetes';
    select.dispatchEvent(new Event('change', { bubbles: true }));
    await new Promise(r => setTimeout(r, 0));
    await new Promise(r => setTimeout(r, 0));
    expect(JSON.parse(String(calls[calls.length - 1].init.body)).backend).toBe('kubernetes');
    // What was typed survives the re-plan, its error too.
    const again = body.node.querySelector<HTMLInputElement>('[data-param="epochs"]')!;
    expect(again.value).toBe('seven');
    expect(again.classList.contains('jp-mod-error')).toBe(true);
    again.value = '8';
    expect(body.getValue()).toMatchObject({ backend: 'kubernetes', parameters: { epochs: 8 } });
    Widget.detach(body);
  });

  it('starts a re-run from the job’s own parameters and backend, and says what it re-runs', async () => {
    const { calls, client } = server({
      local: plan(),
      kubernetes: plan({ backend: 'kubernetes' })
    });
    const body = new SubmitDialogBody(client, 'ui_demo.ipynb', {
      parameters: { epochs: 9, lr: 2, title: 'z' },
      backend: 'kubernetes',
      note: 'Re-run of job j1 from step train'
    });
    Widget.attach(body, document.body);
    await settle(body);
    expect(JSON.parse(String(calls[1].init.body)).backend).toBe('kubernetes');
    expect(body.node.querySelector('[data-testid="jupyter-ext-submit-note"]')!.textContent).toBe(
      'Re-run of job j1 from step train'
    );
    const inputs = Array.from(
      body.node.querySelectorAll<HTMLInputElement>('[data-testid="jupyter-ext-param"]')
    );
    expect(inputs.map(i => `${i.dataset.param}=${i.value}`)).toEqual([
      'epochs=9',
      'lr=2.0',
      'title=z',
      'start=time.time()'
    ]);
    // Unchanged, the re-run runs what the job ran; a change is taken.
    expect(body.getValue()).toMatchObject({
      backend: 'kubernetes',
      parameters: { epochs: 9, lr: 2, title: 'z' }
    });
    inputs[0].value = '3'; // back to the default: the notebook's own value runs
    expect(body.getValue().parameters).toEqual({ lr: 2, title: 'z' });
    Widget.detach(body);
  });

  it('lists the planner’s problems inline and keeps Run blocked', async () => {
    const details = [
      {
        cell: 0,
        step: null,
        tag: 'setp:one',
        message: "cell 0: tag 'setp:one' is not a jupyter-ext tag; did you mean 'step:one'?"
      },
      { cell: 1, step: null, tag: 'gpu:two', message: "cell 1: tag 'gpu:two' is invalid" }
    ];
    const { client } = server({
      local: plan({
        steps: [],
        error: { message: 'the notebook has 2 problems', cell: 0, details }
      })
    });
    const body = new SubmitDialogBody(client, 'bad.ipynb');
    Widget.attach(body, document.body);
    await settle(body);
    const box = body.node.querySelector<HTMLElement>('[data-testid="jupyter-ext-submit-error"]')!;
    expect(box.dataset.cell).toBe('0');
    expect(Array.from(box.querySelectorAll('li')).map(li => li.textContent)).toEqual(
      details.map(d => d.message)
    );
    expect(body.node.querySelector('[data-testid="jupyter-ext-submit-step"]')).toBeNull();
    expect(body.node.querySelector('.jp-mod-error')).not.toBeNull();
    Widget.detach(body);
  });
});

describe('StepEditorBody', () => {
  const cells: INotebookCell[] = [
    { type: 'code', tags: ['parameters'] },
    { type: 'code', tags: ['step:load', 'memory:2Gi'] },
    { type: 'code', tags: [] }
  ];

  function type(body: StepEditorBody, field: string, value: string) {
    const input = body.node.querySelector<HTMLInputElement>(`input[data-field="${field}"]`)!;
    input.value = value;
    input.dispatchEvent(new Event('input', { bubbles: true }));
  }

  function shownErrors(body: StepEditorBody): { [field: string]: string } {
    const out: { [field: string]: string } = {};
    body.node
      .querySelectorAll<HTMLElement>('[data-testid="jupyter-ext-field-error"]')
      .forEach(n => {
        if (!n.hidden) {
          out[n.dataset.field!] = n.textContent!;
        }
      });
    return out;
  }

  it('prefills the step and refuses bad values field by field', () => {
    const body = new StepEditorBody(analyzeNotebook(cells), 1);
    Widget.attach(body, document.body);
    expect(body.node.dataset.testid).toBe('jupyter-ext-step-editor');
    expect(body.getValue()).toMatchObject({ name: 'load', memory: '2Gi', gpu: '' });
    expect(shownErrors(body)).toEqual({});
    type(body, 'gpu', 'two');
    type(body, 'memory', '16GG');
    type(body, 'after', 'nope');
    expect(shownErrors(body)).toEqual({
      gpu: "gpu: 'two' is not a whole number of GPUs; use e.g. 2",
      memory:
        "memory: '16GG' is not a Kubernetes quantity; use e.g. '16Gi' (suffixes Ki, Mi, Gi, Ti or k, M, G, T, or m for thousandths)",
      after: "after: 'nope' names no step; the notebook has no steps"
    });
    expect(body.node.querySelectorAll('input.jp-mod-error').length).toBe(3);
    type(body, 'gpu', '2');
    type(body, 'memory', '4Gi');
    type(body, 'after', '');
    expect(shownErrors(body)).toEqual({});
    expect(body.node.querySelector('.jp-mod-error')).toBeNull();
    Widget.detach(body);
  });

  it('has the dialog look again after its own check ran first', () => {
    // JupyterLab's Dialog checks `.jp-mod-error` from a capturing `input` listener on the
    // document, before the body validated: its last look must see the body's new state.
    const body = new StepEditorBody(analyzeNotebook(cells), 1);
    Widget.attach(body, document.body);
    const looks: boolean[] = [];
    const dialog = () => looks.push(!!body.node.querySelector('.jp-mod-error'));
    document.addEventListener('input', dialog, true);
    try {
      type(body, 'gpu', 'two');
      expect(looks).toEqual([false, true]);
      type(body, 'gpu', '2');
      expect(looks.slice(2)).toEqual([true, false]);
    } finally {
      document.removeEventListener('input', dialog, true);
      Widget.detach(body);
    }
  });

  it('blocks Save on a new step until it has a name, without scolding first', () => {
    const body = new StepEditorBody(analyzeNotebook(cells), 2);
    Widget.attach(body, document.body);
    expect(shownErrors(body)).toEqual({});
    // Save is blocked (the dialog looks for .jp-mod-error), but the empty field is not red yet.
    expect(body.node.querySelector('.jp-mod-error')).not.toBeNull();
    expect(body.node.querySelector('input.jp-mod-error')).toBeNull();
    expect(body.node.querySelector('input[data-field="name"]')!.getAttribute('aria-invalid')).toBe(
      'false'
    );
    type(body, 'name', 'load');
    expect(body.node.querySelector('input[data-field="name"]')!.classList).toContain(
      'jp-mod-error'
    );
    expect(shownErrors(body).name).toBe(
      "name: step 'load' already starts at cell 2; pick another name"
    );
    type(body, 'name', 'train');
    expect(body.node.querySelector('.jp-mod-error')).toBeNull();
    Widget.detach(body);
  });
});

describe('CellBar', () => {
  it('shows on the parameters cell the values the job ran with, as papermill injects them', () => {
    const bar = new CellBar(() => undefined);
    const box = bar.node.querySelector<HTMLElement>('[data-testid="jupyter-ext-cell-parameters"]')!;
    bar.showParameters({ job: '3f2a1c9b8d7e', parameters: { lines: 4, title: 'Ada' } });
    expect(box.hidden).toBe(false);
    expect(box.textContent).toContain('Job 3f2a1c ran with these values');
    expect(box.querySelector('pre')!.textContent).toBe("lines = 4\ntitle = 'Ada'");
    bar.showParameters({ job: 'j', parameters: {} }); // the defaults ran: nothing to say
    expect(box.hidden).toBe(true);
    bar.showParameters(null);
    expect(box.hidden).toBe(true);
    bar.dispose();
  });
});
