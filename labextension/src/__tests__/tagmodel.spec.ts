import {
  analyzeNotebook,
  applyForm,
  BARE_TAGS,
  chipText,
  closeMatches,
  collectTags,
  formFor,
  INotebookCell,
  parseCpu,
  parseDuration,
  parseMemory,
  parseTags,
  PREFIX_TAGS,
  pyRepr,
  removeStep,
  similarity,
  TagError,
  validateForm
} from '../tagmodel';

function settingValues(tags: string[], cell = 0): { [name: string]: unknown } {
  const parsed = parseTags(tags, cell);
  return Object.fromEntries([...parsed.settings].map(([k, s]) => [k, s.value]));
}

function errorOf(tags: unknown, cell: number): TagError & { problems: any[] } {
  try {
    parseTags(tags, cell);
  } catch (err) {
    return err as TagError & { problems: any[] };
  }
  throw new Error(`tags ${JSON.stringify(tags)} were accepted`);
}

const code = (...tags: string[]): INotebookCell => ({ type: 'code', tags });

// -- parity with tests/unit/test_tags.py -------------------------------------------------------------

describe('one cell (parity with test_tags.py)', () => {
  it('reads a full step cell', () => {
    const tags = parseTags(
      [
        'step:train',
        'after:load',
        'prev:clean',
        'gpu:2',
        'memory:16Gi',
        'cpu:500m',
        'image:repo/img:1.0',
        'timeout:1h30m',
        'retries:3',
        'limit:example.com/fpga:1',
        'hide-input',
        'label:team:ml'
      ],
      4
    );
    expect(tags.role).toBe('step');
    expect(tags.step).toBe('train');
    expect([...tags.after.keys()]).toEqual(['load', 'clean']);
    expect(Object.fromEntries([...tags.settings].map(([k, s]) => [k, s.value]))).toEqual({
      gpu: 2,
      memory: '16Gi',
      cpu: '500m',
      image: 'repo/img:1.0',
      timeout: 5400,
      retries: 3
    });
    expect(Object.fromEntries(tags.limits)).toEqual({
      'example.com/fpga': ['1', 'limit:example.com/fpga:1']
    });
    expect(tags.ignored).toEqual(['hide-input', 'label:team:ml']);
  });

  it.each([
    ['imports', 'imports'],
    ['functions', 'functions'],
    ['parameters', 'parameters'],
    ['pipeline-parameters', 'parameters'],
    ['skip', 'skip'],
    ['injected-parameters', 'injected']
  ])('tag %s gives role %s', (tag, role) => {
    expect(parseTags([tag], 0).role).toBe(role);
  });

  it('treats pipeline-metrics as a flag and an empty block: as no tag', () => {
    const tags = parseTags(['pipeline-metrics', 'block:'], 0);
    expect(tags.metrics).toBe(true);
    expect(tags.role).toBeNull();
    expect(tags.step).toBeNull();
  });

  it("reads Kale's limit tags as GPU and memory too", () => {
    const tags = parseTags(['limit:nvidia.com/gpu:2', 'limit:memory:4Gi'], 0);
    expect(tags.settings.get('gpu')!.value).toBe(2);
    expect(tags.settings.get('memory')!.value).toBe('4Gi');
    expect(new Set(tags.limits.keys())).toEqual(new Set(['nvidia.com/gpu', 'memory']));
  });

  it.each([
    ['setp:train', "'step:train'"],
    ['gpus:2', "'gpu:2'"],
    ['memroy:4Gi', "'memory:4Gi'"],
    ['mem:4Gi', "'memory:4Gi'"],
    ['Step:train', "'step:train'"],
    ['aftr:load', "'after:load'"],
    ['timout:2h', "'timeout:2h'"],
    ['fuctions', "'functions'"],
    ['import', "'imports'"],
    ['params', "'parameters'"],
    ['Skip', "'skip'"],
    ['skip:yes', "'skip'"]
  ])('typo %s is an error suggesting %s', (tag, suggestion) => {
    const err = errorOf([tag], 4);
    expect(err.message.startsWith(`cell 5: tag ${pyRepr(tag)} `)).toBe(true);
    expect(err.message).toContain(`did you mean ${suggestion}`);
    expect(err.problems).toEqual([{ cell: 4, step: null, tag, message: err.message }]);
  });

  it.each([
    'hide-input',
    'remove-cell',
    'raises-exception',
    'skip-execution',
    'nbval-skip',
    'thebe-init',
    'important',
    'export',
    'memo:check this',
    'author:me',
    'stop:here now',
    'metrics',
    'hide'
  ])("other people's tag %s is ignored", tag => {
    expect(parseTags([tag], 0).ignored).toEqual([tag]);
  });

  it.each(['step', 'gpu', 'after'])('prefix %s without a value is an error', tag => {
    expect(errorOf([tag], 1).message).toMatch(
      new RegExp(`^cell 2: tag '${tag}' needs a value, e\\.g\\. '${tag}:`)
    );
  });

  it('lists every bad tag of a cell', () => {
    const err = errorOf(['gpu:two', 'memory:16GG', 'setp:x', 7], 2);
    expect(err.problems.map(p => p.tag)).toEqual(['gpu:two', 'memory:16GG', 'setp:x', '7']);
    expect(err.message.startsWith('cell 3 has 4 problems:')).toBe(true);
  });

  it('refuses absurd values, but a near-miss prefix with an invalid value is not ours', () => {
    for (const tag of ['gpu:' + '9'.repeat(5000), 'retries:' + '9'.repeat(5000)]) {
      expect(errorOf([tag], 0).message).toMatch(/^cell 1: tag/);
    }
    expect(parseTags(['gpus:' + '9'.repeat(5000)], 0).ignored.length).toBe(1);
  });

  it('names the cell in every problem, whatever the input', () => {
    const inputs: unknown[] = [
      'x',
      7,
      { a: 1 },
      [1, null, 'gpu:-1', 'cpu:0.0001', 'memory:-4Gi', 'timeout:0s', 'timeout:400d'],
      ['step:a', 'step:b', 'imports', 'parameters'],
      ['limit:x', 'limit:memory:4Gi', 'memory:5Gi', 'image:a b', 'after:bad name!']
    ];
    for (const tags of inputs) {
      const [, problems] = collectTags(tags, 17);
      expect(problems.length).toBeGreaterThan(0);
      for (const p of problems) {
        expect(p.cell).toBe(17);
        expect(p.message.startsWith('cell 18')).toBe(true);
      }
    }
  });

  it('round-trips generated valid tags', () => {
    for (const [gpu, memory, millicores, retries, minutes] of [
      [0, '1', 1, 0, 1],
      [1024, '1000000Gi', 64000, 100, 10000],
      [3, '512M', 250, 7, 90]
    ] as const) {
      expect(
        settingValues([
          'step:a.b-c_d',
          'after:x',
          `gpu:${gpu}`,
          `memory:${memory}`,
          `cpu:${millicores}m`,
          `retries:${retries}`,
          `timeout:${minutes}m`
        ])
      ).toEqual({
        gpu,
        memory,
        cpu: `${millicores}m`,
        retries,
        timeout: minutes * 60
      });
    }
  });

  it('knows the same tags as the server', () => {
    expect(Object.keys(BARE_TAGS)).toEqual([
      'imports',
      'functions',
      'parameters',
      'pipeline-parameters',
      'skip',
      'injected-parameters',
      'pipeline-metrics'
    ]);
    expect(Object.keys(PREFIX_TAGS)).toContain('block');
  });
});

describe('values (quantity.py)', () => {
  it('reads quantities exactly', () => {
    expect(parseMemory('16Gi')).toBe(parseMemory('16384Mi'));
    expect(parseCpu('0.5')).toBe(parseCpu('500m'));
    expect(() => parseCpu('0.0005')).toThrow("cpu: '0.0005' is finer than a millicore");
    expect(() => parseMemory('0')).toThrow('must be more than zero');
    expect(() => parseMemory('2000Ei')).toThrow('larger than any machine');
    expect(() => parseMemory('16GG')).toThrow(
      "memory: '16GG' is not a Kubernetes quantity; use e.g. '16Gi'"
    );
    expect(parseDuration('1h 30m')).toBe(5400);
    expect(parseDuration('45')).toBe(45);
    expect(() => parseDuration('2 weeks')).toThrow('is not a duration');
  });

  it('scores near misses as difflib does', () => {
    expect(similarity('abcd', 'bcde')).toBeCloseTo(0.75);
    expect(similarity('step', 'setp')).toBeCloseTo(0.75);
    expect(closeMatches('appel', ['ape', 'apple', 'peach', 'puppy'])).toEqual(['apple', 'ape']);
  });
});

// -- the notebook and the step editor ---------------------------------------------------------------------

describe('notebook steps (plan.py rules)', () => {
  const cells: INotebookCell[] = [
    code('parameters'),
    { type: 'markdown', tags: ['step:nope'] },
    code('block:load', 'memory:2Gi'),
    code(),
    code('step:train', 'prev:load', 'limit:nvidia.com/gpu:2', 'hide-input'),
    code('pipeline-metrics'),
    code('skip'),
    code('step:load')
  ];

  it("assigns cells to steps as Kale does and reads the step's settings", () => {
    const nb = analyzeNotebook(cells);
    expect(nb.single).toBe(false);
    expect(nb.problems).toEqual([]);
    expect(nb.steps.get('load')!.cells).toEqual([2, 3, 7]);
    expect(nb.steps.get('load')!.openers).toEqual([2, 7]);
    expect(nb.steps.get('train')!).toMatchObject({
      cells: [4, 5],
      after: ['load'],
      settings: { gpu: '2' }
    });
    expect(nb.cells.map(c => c.step)).toEqual([
      null,
      null,
      'load',
      'load',
      'train',
      'train',
      null,
      'load'
    ]);
    expect(chipText(nb, 2)).toBe('load · 2Gi');
    expect(chipText(nb, 4)).toBe('train · 2 GPU');
    expect(chipText(nb, 3)).toBe('+ step');
  });

  it('reports an unknown after: with a suggestion, and cycles', () => {
    let nb = analyzeNotebook([code('step:one'), code('step:two', 'after:onee')]);
    expect(nb.problems.map(p => p.message)).toEqual([
      "cell 2: tag 'after:onee' names no step; did you mean 'one'?"
    ]);
    nb = analyzeNotebook([code('step:a', 'after:b'), code('step:b', 'after:a')]);
    expect(nb.problems[0].message).toContain('form a cycle');
  });

  it('treats an untagged notebook as one step main', () => {
    const nb = analyzeNotebook([code('parameters'), code(), code('gpu:1')]);
    expect(nb.single).toBe(true);
    expect(nb.steps.get('main')!.cells).toEqual([1, 2]);
    expect(chipText(nb, 1)).toBe('+ step');
  });
});

describe('step editor form', () => {
  const cells: INotebookCell[] = [
    code('parameters'),
    code('step:load', 'memory:2Gi', 'hide-input'),
    code('cpu:1'),
    code('step:train', 'prev:load', 'limit:nvidia.com/gpu:2', 'limit:example.com/fpga:1'),
    code(),
    code('step:report', 'after:load', 'after:train')
  ];

  it('prefills the form from the step a cell opens', () => {
    const nb = analyzeNotebook(cells);
    expect(formFor(nb, 1)).toEqual({
      name: 'load',
      after: '',
      gpu: '',
      memory: '2Gi',
      cpu: '1',
      image: '',
      timeout: '',
      retries: ''
    });
    expect(formFor(nb, 3)).toMatchObject({ name: 'train', after: 'load', gpu: '2' });
    expect(formFor(nb, 4).name).toBe('');
  });

  it('refuses invalid values field by field, with the rules of tags.py', () => {
    const nb = analyzeNotebook(cells);
    const form = {
      name: 'bad name',
      after: 'nope',
      gpu: 'two',
      memory: '16GG',
      cpu: '0.0001',
      image: 'a b',
      timeout: 'soon',
      retries: '101'
    };
    const errors = validateForm(nb, 4, form);
    expect(Object.keys(errors).sort()).toEqual(
      ['after', 'cpu', 'gpu', 'image', 'memory', 'name', 'retries', 'timeout'].sort()
    );
    expect(errors.name).toContain("'bad name' is not a step name");
    expect(errors.gpu).toBe("gpu: 'two' is not a whole number of GPUs; use e.g. 2");
    expect(validateForm(nb, 4, { ...form, name: 'x' }).after).toBe(
      "after: 'nope' names no step; steps are: 'load', 'train', 'report'"
    );
    expect(validateForm(nb, 4, { ...formFor(nb, 4), name: 'x', after: 'lod' }).after).toBe(
      "after: 'lod' names no step; did you mean 'load'?"
    );
    expect(validateForm(nb, 4, { ...formFor(nb, 4), name: 'load' }).name).toContain(
      "step 'load' already starts at cell 2"
    );
    expect(validateForm(nb, 1, { ...formFor(nb, 1), after: 'report' }).after).toContain(
      'would form a cycle'
    );
    expect(validateForm(nb, 1, { ...formFor(nb, 1), after: 'load' }).after).toContain(
      'cannot run after itself'
    );
    expect(validateForm(nb, 0, { ...formFor(nb, 0), name: 'p' }).name).toContain(
      'is the parameters cell'
    );
    expect(validateForm(nb, 3, formFor(nb, 3))).toEqual({});
  });

  it('writes canonical tags, moves step settings to the opening cell and keeps other tags', () => {
    const nb = analyzeNotebook(cells);
    const changes = applyForm(cells, 1, { ...formFor(nb, 1), gpu: '1', timeout: '1h 30m' });
    expect(Object.fromEntries(changes)).toEqual({
      1: ['step:load', 'gpu:1', 'memory:2Gi', 'cpu:1', 'timeout:1h30m', 'hide-input'],
      2: []
    });
  });

  it('renames a step everywhere it is named', () => {
    const nb = analyzeNotebook(cells);
    const changes = applyForm(cells, 1, { ...formFor(nb, 1), name: 'fetch' });
    expect(Object.fromEntries(changes)).toEqual({
      1: ['step:fetch', 'memory:2Gi', 'cpu:1', 'hide-input'],
      2: [],
      3: ['step:train', 'after:fetch', 'limit:nvidia.com/gpu:2', 'limit:example.com/fpga:1'],
      5: ['step:report', 'after:fetch', 'after:train']
    });
  });

  it('replaces Kale limits for GPU/memory/CPU but keeps other limits', () => {
    const nb = analyzeNotebook(cells);
    const changes = applyForm(cells, 3, { ...formFor(nb, 3), gpu: '4' });
    expect(changes.get(3)).toEqual([
      'step:train',
      'after:load',
      'gpu:4',
      'limit:example.com/fpga:1'
    ]);
  });

  it('starts a new step on a cell that continues another', () => {
    const changes = applyForm(cells, 4, {
      name: 'eval',
      after: 'train',
      gpu: '',
      memory: '',
      cpu: '',
      image: 'python:3.11-slim',
      timeout: '',
      retries: '2'
    });
    expect(Object.fromEntries(changes)).toEqual({
      4: ['step:eval', 'after:train', 'image:python:3.11-slim', 'retries:2']
    });
    const after = cells.map((c, i) => (changes.has(i) ? { ...c, tags: changes.get(i) } : c));
    expect(analyzeNotebook(after).steps.get('eval')!.cells).toEqual([4]);
  });

  it('removes a step and the after: tags that named it', () => {
    const changes = removeStep(cells, 3);
    expect(Object.fromEntries(changes)).toEqual({
      3: ['limit:example.com/fpga:1'],
      5: ['step:report', 'after:load']
    });
    expect(removeStep(cells, 4).size).toBe(0);
  });
});
