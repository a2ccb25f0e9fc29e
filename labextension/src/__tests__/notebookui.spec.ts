import { Widget } from '@lumino/widgets';
import { JupyterExtClient, MakeRequest } from '../client';
import { CellBar } from '../cellchips';
import { StepEditorBody } from '../stepeditor';
import { parameterText, parseParameter, stepResources, SubmitDialogBody } from '../submitdialog';
import type { FormErrors, INotebookSteps, IStepForm } from '../tagcheck';
import { answer, cellInfo, loadNotebook, stepInfo } from './tagfakes';
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
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  /**
   * A FAKE of the server's `POST tags/check` with an edit: it answers the errors `rules` gives
   * for the form (the real rules are the server's, tested in tests/server/test_tagcheck.py),
   * and records each form it was asked about.
   */
  function fakeServerCheck(rules: (form: IStepForm) => FormErrors) {
    const asked: IStepForm[] = [];
    const check = async (form: IStepForm): Promise<INotebookSteps> => {
      asked.push({ ...form });
      return { ...loadNotebook(), edit: { errors: rules(form), changes: [] } };
    };
    return { asked, check };
  }

  /** The fake's rules for a form on cell `cell` (cell 1 opens step load). */
  const rulesFor = (cell: number) => (form: IStepForm) => {
    const errors: FormErrors = {};
    if (!form.name) {
      errors.name = 'name: give the step a name, e.g. train';
    } else if (form.name === 'load' && cell !== 1) {
      errors.name = "name: step 'load' already starts at cell 2; pick another name";
    }
    if (form.gpu === 'two') {
      errors.gpu = "gpu: 'two' is not a whole number of GPUs; use e.g. 2";
    }
    if (form.after === 'nope') {
      errors.after = "after: 'nope' names no step; the notebook has no steps";
    }
    return errors;
  };

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

  const status = (body: StepEditorBody) =>
    body.node.querySelector<HTMLElement>('[data-testid="jupyter-ext-step-editor-check"]')!;
  const blocked = (body: StepEditorBody) => !!body.node.querySelector('.jp-mod-error');

  /** Let the debounce run out and the fake's answer arrive. */
  async function answered(): Promise<void> {
    await jest.advanceTimersByTimeAsync(300);
  }

  it('prefills the step from the server answer and shows its errors field by field', async () => {
    const server = fakeServerCheck(rulesFor(1));
    const body = new StepEditorBody(loadNotebook(), 1, server.check);
    Widget.attach(body, document.body);
    expect(body.node.dataset.testid).toBe('jupyter-ext-step-editor');
    expect(body.getValue()).toMatchObject({ name: 'load', memory: '2Gi', gpu: '' });
    await answered();
    type(body, 'gpu', 'two');
    type(body, 'after', 'nope');
    // Waiting for the server: Save is blocked and the editor says it is checking.
    expect(blocked(body)).toBe(true);
    expect(status(body).hidden).toBe(false);
    expect(status(body).textContent).toBe('Checking the step…');
    await answered();
    expect(server.asked.length).toBe(2); // the first look, then once for both keystrokes
    expect(shownErrors(body)).toEqual({
      gpu: "gpu: 'two' is not a whole number of GPUs; use e.g. 2",
      after: "after: 'nope' names no step; the notebook has no steps"
    });
    expect(body.node.querySelectorAll('input.jp-mod-error').length).toBe(2);
    expect(status(body).hidden).toBe(true);
    type(body, 'gpu', '2');
    // Until the answer comes, the last one stays shown (and Save stays off).
    expect(shownErrors(body).gpu).toContain("'two'");
    expect(blocked(body)).toBe(true);
    type(body, 'after', '');
    await answered();
    expect(shownErrors(body)).toEqual({});
    expect(blocked(body)).toBe(false);
    Widget.detach(body);
  });

  it('has the dialog look again when the answer arrives', async () => {
    // JupyterLab's Dialog checks `.jp-mod-error` from a capturing `input` listener on the
    // document: after the server's answer its last look must see the body's new state.
    const server = fakeServerCheck(rulesFor(1));
    const body = new StepEditorBody(loadNotebook(), 1, server.check);
    Widget.attach(body, document.body);
    await answered();
    const looks: boolean[] = [];
    const dialog = () => looks.push(blocked(body));
    document.addEventListener('input', dialog, true);
    try {
      type(body, 'gpu', 'two');
      await answered();
      expect(looks[looks.length - 1]).toBe(true);
      type(body, 'gpu', '2');
      await answered();
      expect(looks[looks.length - 1]).toBe(false);
    } finally {
      document.removeEventListener('input', dialog, true);
      Widget.detach(body);
    }
  });

  it('blocks Save on a new step until it has a name, without scolding first', async () => {
    const server = fakeServerCheck(rulesFor(2));
    const body = new StepEditorBody(loadNotebook(), 2, server.check);
    Widget.attach(body, document.body);
    await answered();
    expect(shownErrors(body)).toEqual({});
    // Save is blocked (the dialog looks for .jp-mod-error), but the empty field is not red yet.
    expect(blocked(body)).toBe(true);
    expect(body.node.querySelector('input.jp-mod-error')).toBeNull();
    expect(body.node.querySelector('input[data-field="name"]')!.getAttribute('aria-invalid')).toBe(
      'false'
    );
    type(body, 'name', 'load');
    await answered();
    expect(shownErrors(body).name).toBe(
      "name: step 'load' already starts at cell 2; pick another name"
    );
    type(body, 'name', 'train');
    await answered();
    expect(blocked(body)).toBe(false);
    Widget.detach(body);
  });

  it('says when the server cannot be reached, and keeps Save blocked until it answers', async () => {
    let reachable = false;
    const check = async (form: IStepForm): Promise<INotebookSteps> => {
      if (!reachable) {
        throw new TypeError('Failed to fetch');
      }
      return { ...loadNotebook(), edit: { errors: rulesFor(1)(form), changes: [] } };
    };
    const body = new StepEditorBody(loadNotebook(), 1, check);
    Widget.attach(body, document.body);
    type(body, 'name', 'train');
    await answered();
    expect(blocked(body)).toBe(true);
    expect(status(body).dataset.state).toBe('failed');
    expect(status(body).textContent).toContain(
      'The server could not check the tags (Failed to fetch)'
    );
    reachable = true;
    type(body, 'gpu', '1');
    await answered();
    expect(status(body).hidden).toBe(true);
    expect(blocked(body)).toBe(false);
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

  it('shows the step a cell opens, its resources and problems, from the server answer', () => {
    const bar = new CellBar(() => undefined);
    const nb = answer({
      cells: [
        cellInfo(0, {
          tags: ['step:train', 'gpu:2', 'memory:16Gi', 'after:lod'],
          role: 'step',
          step: 'train',
          opens: true,
          problems: [
            {
              cell: 0,
              step: 'train',
              tag: 'after:lod',
              message: "cell 1: tag 'after:lod' names no step; did you mean 'load'?"
            }
          ]
        }),
        cellInfo(1, { step: 'train' })
      ],
      steps: [stepInfo('train', [0, 1], { after: ['lod'], settings: { gpu: '2', memory: '16Gi' } })]
    });
    bar.showTags(nb, 0);
    expect(bar.chip.textContent).toBe('train · 2 GPU · 16Gi');
    expect(bar.chip.dataset.role).toBe('step');
    expect(bar.chip.classList).toContain('jp-mod-problem');
    expect(bar.chip.title).toContain(
      "⚠ cell 1: tag 'after:lod' names no step; did you mean 'load'?"
    );
    bar.showTags(nb, 1);
    expect(bar.chip.textContent).toBe('+ step');
    expect(bar.chip.dataset.role).toBe('continues');
    expect(bar.chip.title).toContain('Part of step train.');
    bar.dispose();
  });

  it('says while the tags are being checked, and when the server cannot check them', () => {
    const bar = new CellBar(() => undefined);
    bar.showTags(null, 0, 'waiting');
    expect(bar.chip.textContent).toBe('…');
    expect(bar.chip.title).toBe('Checking the tags…');
    expect(bar.chip.classList).toContain('jp-mod-checking');
    bar.showTags(null, 0, 'failed', 'Failed to fetch');
    expect(bar.chip.title).toContain('The server could not check the tags (Failed to fetch)');
    expect(bar.chip.classList).toContain('jp-mod-unchecked');
    expect(bar.chip.dataset.check).toBe('failed');
    // An earlier answer stays shown while a new one is awaited, marked as such.
    bar.showTags(loadNotebook(), 1, 'waiting');
    expect(bar.chip.textContent).toBe('load · 2Gi');
    expect(bar.chip.title).toContain('(Checking the tags as they are now…)');
    bar.dispose();
  });
});
