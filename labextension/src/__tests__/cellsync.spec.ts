import {
  CellSync,
  ICellSink,
  IRunRecord,
  isRecord,
  newRecord,
  parametersText,
  plainDiagnostic,
  plainError,
  runCells
} from '../cellsync';
import { answer, cellInfo } from './tagfakes';
import { IEvent } from '../tokens';

/** An in-memory notebook: cells by id, each a list of outputs (streams merge as in Lab). */
class MemoryNotebook implements ICellSink {
  cells: { id: string; outputs: any[]; count: number | null }[];
  constructor(ids: string[]) {
    this.cells = ids.map(id => ({ id, outputs: [], count: null }));
  }
  private cell(id: string) {
    const cell = this.cells.find(c => c.id === id);
    if (!cell) {
      throw new Error(`no cell ${id}`);
    }
    return cell;
  }
  has(id: string) {
    return this.cells.some(c => c.id === id);
  }
  idAt(index: number) {
    return this.cells[index]?.id ?? null;
  }
  clear(id: string) {
    this.cell(id).outputs = [];
  }
  append(id: string, output: any) {
    const outputs = this.cell(id).outputs;
    const last = outputs[outputs.length - 1];
    if (
      output.output_type === 'stream' &&
      last?.output_type === 'stream' &&
      last.name === output.name
    ) {
      outputs[outputs.length - 1] = { ...last, text: last.text + output.text };
    } else {
      outputs.push({ ...output });
    }
    return outputs.length - 1;
  }
  replace(id: string, index: number, output: any) {
    this.cell(id).outputs[index] = { ...output };
  }
  setExecutionCount(id: string, count: number | null) {
    this.cell(id).count = count;
  }
  text(id: string): string {
    return this.cell(id)
      .outputs.map(o => o.text ?? o.data?.['text/plain'] ?? `<${o.output_type}>`)
      .join('|');
  }
}

/** Events of a two-step job over cells a (index 0, step one) and b, c (indices 1, 2, step two). */
function events(): IEvent[] {
  const raw: any[] = [
    { type: 'job.queued', steps: ['one', 'two'] },
    { type: 'step.start', step: 'one' },
    { type: 'cell.start', step: 'one', cell_index: 0, cell_id: 'a' },
    { type: 'cell.output', step: 'one', cell_index: 0, cell_id: 'a', output: stream('x\n') },
    { type: 'cell.output', step: 'one', cell_index: 0, cell_id: 'a', output: stream('y\n') },
    {
      type: 'cell.end',
      step: 'one',
      cell_index: 0,
      cell_id: 'a',
      status: 'ok',
      execution_count: 1
    },
    { type: 'step.end', step: 'one', status: 'succeeded' },
    { type: 'step.start', step: 'two' },
    { type: 'cell.start', step: 'two', cell_index: 1, cell_id: 'b' },
    {
      type: 'cell.output',
      step: 'two',
      cell_index: 1,
      cell_id: 'b',
      output: {
        output_type: 'display_data',
        data: { 'image/png': 'iVBOR', 'text/plain': 'fig' },
        metadata: {}
      }
    },
    {
      type: 'cell.end',
      step: 'two',
      cell_index: 1,
      cell_id: 'b',
      status: 'ok',
      execution_count: 2
    },
    { type: 'cell.start', step: 'two', cell_index: 2, cell_id: 'c' },
    {
      type: 'cell.output',
      step: 'two',
      cell_index: 2,
      cell_id: 'c',
      output: { output_type: 'error', ename: 'ValueError', evalue: 'bad', traceback: ['tb'] }
    },
    {
      type: 'cell.end',
      step: 'two',
      cell_index: 2,
      cell_id: 'c',
      status: 'error',
      ename: 'ValueError',
      evalue: 'bad',
      execution_count: 3
    },
    {
      type: 'step.end',
      step: 'two',
      status: 'failed',
      error: {
        cell_index: 2,
        cell_id: 'c',
        ename: 'ValueError',
        evalue: 'bad',
        message: 'cell 2 raised ValueError: bad'
      }
    },
    {
      type: 'job.end',
      status: 'failed',
      error: { step: 'two', message: 'cell 2 raised ValueError: bad' }
    }
  ];
  return raw.map((e, i) => ({ v: 1, job: 'J', step: null, ts: 0, ...e, seq: i + 1 }));
}

function stream(text: string, name = 'stdout') {
  return { output_type: 'stream', name, text };
}

function ev(seq: number, e: any): IEvent {
  return { v: 1, job: 'J', step: 'one', ts: 0, seq, ...e };
}

function fresh(ids = ['a', 'b', 'c']): [MemoryNotebook, CellSync] {
  const nb = new MemoryNotebook(ids);
  return [nb, new CellSync(newRecord('J', ids, { one: [0], two: [1, 2] }), nb)];
}

describe('CellSync', () => {
  it('puts each output in its cell, with states, counts and the error on the failing cell', () => {
    const [nb, sync] = fresh();
    expect(sync.record.states).toEqual({ a: 'queued', b: 'queued', c: 'queued' });
    for (const e of events()) {
      expect(sync.apply(e)).toBe('applied');
    }
    expect(nb.text('a')).toBe('x\ny\n');
    expect(nb.text('b')).toBe('fig');
    expect(nb.cells.map(c => c.count)).toEqual([1, 2, 3]);
    expect(sync.record.states).toEqual({ a: 'succeeded', b: 'succeeded', c: 'failed' });
    expect(sync.record.messages).toEqual({
      c: { kind: 'error', text: "This cell raised ValueError: bad. Step 'two' stopped here." }
    });
    expect(sync.record.done).toBe(true);
    expect(sync.record.seq).toBe(16);
  });

  it('ignores duplicates and refuses gaps, so a replay never doubles an output', () => {
    const [nb, sync] = fresh();
    const all = events();
    for (const e of all.slice(0, 5)) {
      sync.apply(e);
    }
    expect(sync.apply(all[3])).toBe('duplicate');
    expect(sync.apply(all[4])).toBe('duplicate');
    expect(sync.apply(all[7])).toBe('gap');
    expect(nb.text('a')).toBe('x\ny\n');
    expect(sync.record.seq).toBe(5);
    for (const e of all.slice(5)) {
      expect(sync.apply(e)).toBe('applied');
    }
    expect(nb.text('a')).toBe('x\ny\n');
  });

  it('resumes from a saved record (reload): the rest arrives once, without gaps', () => {
    const [nb, sync] = fresh();
    const all = events();
    for (const e of all.slice(0, 9)) {
      sync.apply(e);
    }
    // The page reloads: the notebook comes back with its outputs and the record beside them.
    const saved = JSON.parse(JSON.stringify(sync.record));
    expect(isRecord(saved)).toBe(true);
    const resumed = new CellSync(saved as IRunRecord, nb);
    // The stream is reopened with after=seq; a server that sends a few old events again is harmless.
    const replay = all.slice(saved.seq - 2);
    expect(replay.map(e => resumed.apply(e)).filter(r => r === 'applied').length).toBe(
      all.length - 9
    );
    expect(nb.text('a')).toBe('x\ny\n');
    expect(nb.text('b')).toBe('fig');
    expect(resumed.record.states.c).toBe('failed');
  });

  it('follows clear_output semantics: now, or at the next output with wait=True', () => {
    const [nb, sync] = fresh();
    let seq = 0;
    const send = (e: any) => sync.apply(ev(++seq, { cell_id: 'a', cell_index: 0, ...e }));
    send({ type: 'cell.start' });
    send({ type: 'cell.output', output: stream('10%\n') });
    send({ type: 'cell.clear', wait: true });
    expect(nb.text('a')).toBe('10%\n');
    expect(sync.record.pendingClear).toEqual(['a']);
    send({ type: 'cell.output', output: stream('20%\n') });
    expect(nb.text('a')).toBe('20%\n');
    send({ type: 'cell.clear', wait: false });
    expect(nb.text('a')).toBe('');
    send({ type: 'cell.output', output: stream('done\n') });
    expect(nb.text('a')).toBe('done\n');
    // Re-running a cell (a retry) starts it from an empty output area, as Run does locally.
    send({ type: 'cell.start' });
    expect(nb.text('a')).toBe('');
    expect(nb.cells[0].count).toBeNull();
  });

  it('updates displays by display_id, across cells, and drops them with a clear', () => {
    const [nb, sync] = fresh();
    let seq = 0;
    const display = (cell: string, text: string, update = false) =>
      sync.apply(
        ev(++seq, {
          type: 'cell.output',
          cell_id: cell,
          cell_index: ['a', 'b', 'c'].indexOf(cell),
          output: { output_type: 'display_data', data: { 'text/plain': text }, metadata: {} },
          display_id: 'd1',
          update
        })
      );
    display('a', 'v1');
    display('b', 'v1');
    display('a', 'v2', true);
    expect([nb.text('a'), nb.text('b')]).toEqual(['v2', 'v2']);
    sync.apply(ev(++seq, { type: 'cell.clear', cell_id: 'a', cell_index: 0, wait: false }));
    display('a', 'v3', true);
    expect([nb.text('a'), nb.text('b')]).toEqual(['', 'v3']);
  });

  it('finds cells by id while the user inserts and deletes cells, by index only as submitted', () => {
    const [nb, sync] = fresh();
    nb.cells.unshift({ id: 'new', outputs: [], count: null }); // inserted above after submitting
    sync.apply(
      ev(1, { type: 'cell.output', cell_id: 'b', cell_index: 1, output: stream('to b\n') })
    );
    // An event without an id falls back to the id the cell had at that index when submitted.
    sync.apply(
      ev(2, { type: 'cell.output', cell_id: null, cell_index: 2, output: stream('to c\n') })
    );
    expect([nb.text('new'), nb.text('b'), nb.text('c')]).toEqual(['', 'to b\n', 'to c\n']);
    nb.cells = nb.cells.filter(c => c.id !== 'c'); // deleted: its outputs go nowhere
    expect(
      sync.apply(
        ev(3, { type: 'cell.output', cell_id: 'c', cell_index: 2, output: stream('lost\n') })
      )
    ).toBe('applied');
    expect(nb.cells.map(c => nb.text(c.id))).toEqual(['', '', 'to b\n']);
    // papermill's injected parameters cell has no place in the notebook.
    sync.apply(
      ev(4, {
        type: 'cell.output',
        cell_id: 'x',
        cell_index: null,
        injected: true,
        output: stream('p\n')
      })
    );
    expect(nb.cells.map(c => nb.text(c.id)).join('')).toBe('to b\n');
  });

  it('shows scheduling problems on the step, then clears them when the step starts', () => {
    const [, sync] = fresh();
    sync.apply(
      ev(1, {
        type: 'log',
        step: 'two',
        stream: 'stderr',
        reason: 'unschedulable',
        text: "Waiting for a machine: no node has enough free GPUs for step 'two' right now.\n"
      })
    );
    expect(sync.record.messages.b).toEqual({
      kind: 'warning',
      reason: 'unschedulable',
      text: "Waiting for a machine: no node has enough free GPUs for step 'two' right now."
    });
    sync.apply(ev(2, { type: 'step.start', step: 'two' }));
    expect(sync.record.messages).toEqual({});
  });

  it('puts a step error that names no cell on the step’s first cell, in plain words', () => {
    const [, sync] = fresh();
    sync.apply(ev(1, { type: 'step.start', step: 'two' }));
    sync.apply(ev(2, { type: 'cell.start', step: 'two', cell_id: 'b', cell_index: 1 }));
    sync.apply(
      ev(3, {
        type: 'step.end',
        step: 'two',
        status: 'failed',
        exit_code: 137,
        reason: 'oom',
        error: {
          reason: 'oom',
          message:
            "Out of memory: step 'two' used more than its memory limit of 1Gi. Raise `memory:`."
        }
      })
    );
    expect(sync.record.states).toEqual({ a: 'queued', b: 'failed', c: 'not_run' });
    // The server's words, as made once for the code (less their code marks); the code kept.
    expect(sync.record.messages.b).toEqual({
      kind: 'error',
      reason: 'oom',
      text: "Out of memory: step 'two' used more than its memory limit of 1Gi. Raise memory:."
    });
  });

  it('shows the server’s words of a step not run, as a sentence', () => {
    const [, sync] = fresh();
    sync.apply(
      ev(1, {
        type: 'step.end',
        step: 'one',
        status: 'not_run',
        error: { message: "not run because step 'two' failed" }
      })
    );
    expect(sync.record.messages.a).toEqual({
      kind: 'warning',
      text: "Not run because step 'two' failed"
    });
  });

  it('marks a retried step queued again and says so', () => {
    const [, sync] = fresh();
    sync.apply(ev(1, { type: 'cell.start', step: 'one', cell_id: 'a', cell_index: 0 }));
    sync.apply(
      ev(2, {
        type: 'step.retry',
        step: 'one',
        attempt: 1,
        next_attempt: 2,
        error: { message: 'lost' }
      })
    );
    expect(sync.record.states.a).toBe('queued');
    expect(sync.record.messages.a.text).toBe('Attempt 1 failed (lost); retrying as attempt 2.');
    sync.apply(ev(3, { type: 'step.end', step: 'one', status: 'cancelled' }));
    expect(sync.record.states.a).toBe('cancelled');
  });
});

describe('CellSync: cells show only the current run', () => {
  /** A notebook that ran before: every cell has outputs and a count from that run. */
  function ranBefore(ids = ['p', 'a', 'b', 'c', 'skip']): MemoryNotebook {
    const nb = new MemoryNotebook(ids);
    nb.cells.forEach((cell, i) => {
      cell.outputs = [stream(`old ${cell.id}\n`)];
      cell.count = i + 1;
    });
    return nb;
  }

  it('clears every cell the run will touch when it starts, and leaves the others alone', () => {
    const nb = ranBefore();
    // Step one is cell 1, step two cells 2-3; cell 0 (parameters) runs in every step; 4 is skip.
    const sync = new CellSync(
      newRecord(
        'J2',
        nb.cells.map(c => c.id),
        { one: [1], two: [2, 3] }
      ),
      nb
    );
    sync.begin([0, 1, 2, 3]);
    expect(nb.cells.map(c => nb.text(c.id))).toEqual(['', '', '', '', 'old skip\n']);
    expect(nb.cells.map(c => c.count)).toEqual([null, null, null, null, 5]);
    expect(sync.record.states).toEqual({ p: 'queued', a: 'queued', b: 'queued', c: 'queued' });
    // Cancelled before anything ran: the cells stay empty, they say "cancelled", no old loss plot.
    sync.apply(ev(1, { type: 'step.end', step: 'one', status: 'cancelled' }));
    sync.apply(ev(2, { type: 'step.end', step: 'two', status: 'cancelled' }));
    expect(nb.cells.slice(0, 4).map(c => nb.text(c.id))).toEqual(['', '', '', '']);
    expect(sync.record.states.b).toBe('cancelled');
  });

  it('knows which cells a run executes: steps, imports and parameters; not skip or markdown', () => {
    // The server's answer (POST tags/check) for: markdown, untagged, imports, untagged,
    // parameters, step:load, skip, step:train + after:load, untagged.
    const nb = answer({
      cells: [
        cellInfo(0, { tags: null }),
        cellInfo(1), // before the first tag, in no step (as in Kale)
        cellInfo(2, { tags: ['imports'], role: 'imports' }),
        cellInfo(3), // continues the imports block
        cellInfo(4, { tags: ['parameters'], role: 'parameters' }),
        cellInfo(5, { tags: ['step:load'], role: 'step', step: 'load', opens: true }),
        cellInfo(6, { tags: ['skip'], role: 'skip' }),
        cellInfo(7, {
          tags: ['step:train', 'after:load'],
          role: 'step',
          step: 'train',
          opens: true
        }),
        cellInfo(8, { step: 'train' })
      ]
    });
    expect(runCells(nb)).toEqual([2, 3, 4, 5, 7, 8]);
    expect(runCells(nb, ['load'])).toEqual([2, 3, 4, 7, 8]);
    // No step tags: one step, every code cell but skip.
    const single = answer({
      single: true,
      cells: [
        cellInfo(0, { tags: ['parameters'], role: 'parameters' }),
        cellInfo(1, { step: 'main' }),
        cellInfo(2, { tags: ['skip'], role: 'skip' }),
        cellInfo(3, { step: 'main' })
      ]
    });
    expect(runCells(single)).toEqual([0, 1, 3]);
  });

  it('keeps the cells of steps a re-run reuses, marked done, and clears the rest', () => {
    const nb = ranBefore(['a', 'b', 'c']);
    const record = newRecord('J3', ['a', 'b', 'c'], { one: [0], two: [1, 2] }, { reused: ['one'] });
    expect(record.states).toEqual({ a: 'succeeded', b: 'queued', c: 'queued' });
    new CellSync(record, nb).begin([1, 2]);
    expect(nb.cells.map(c => nb.text(c.id))).toEqual(['old a\n', '', '']);
  });

  it('numbers cells in this run’s order of execution, though each step has its own kernel', () => {
    const [nb, sync] = fresh(['i', 'a', 'b', 'c']);
    let seq = 0;
    const cellRun = (step: string, id: string, kernelCount: number) => {
      const index = ['i', 'a', 'b', 'c'].indexOf(id);
      const where = { step, cell_id: id, cell_index: index };
      sync.apply(ev(++seq, { type: 'cell.start', ...where }));
      sync.apply(
        ev(++seq, { type: 'cell.end', ...where, status: 'ok', execution_count: kernelCount })
      );
    };
    // The kernels count [1],[2] in step one and [1],[2],[3] in step two (imports cell i first).
    cellRun('one', 'i', 1);
    cellRun('one', 'a', 2);
    cellRun('two', 'i', 1);
    cellRun('two', 'b', 2);
    cellRun('two', 'c', 3);
    expect(nb.cells.map(c => c.count)).toEqual([3, 2, 4, 5]);
    // Steps running side by side: counts follow the order the cells started in.
    const [nb2, sync2] = fresh(['a', 'b', 'c']);
    const start = (s: number, id: string) =>
      sync2.apply(
        ev(s, { type: 'cell.start', cell_id: id, cell_index: ['a', 'b', 'c'].indexOf(id) })
      );
    const end = (s: number, id: string, count: number) =>
      sync2.apply(
        ev(s, {
          type: 'cell.end',
          cell_id: id,
          cell_index: ['a', 'b', 'c'].indexOf(id),
          status: 'ok',
          execution_count: count
        })
      );
    start(1, 'a');
    start(2, 'b');
    end(3, 'b', 1);
    end(4, 'a', 1);
    start(5, 'c');
    end(6, 'c', 2);
    expect(nb2.cells.map(c => c.count)).toEqual([1, 2, 3]);
    // The count survives a reload between a cell's start and its end.
    const saved = JSON.parse(JSON.stringify(sync.record)) as IRunRecord;
    expect(isRecord(saved)).toBe(true);
    expect(saved.count).toBe(5);
  });

  it('keeps the parameters the job ran with, and papermill’s injected cell as it ran', () => {
    const nb = new MemoryNotebook(['p', 'a']);
    const sync = new CellSync(
      newRecord('J', ['p', 'a'], { main: [1] }, { parameters: { lines: 4, title: "it's" } }),
      nb
    );
    expect(parametersText(sync.record.parameters)).toBe("lines = 4, title = 'it\\'s'");
    sync.apply(
      ev(1, {
        type: 'cell.start',
        cell_id: 'x',
        cell_index: null,
        injected: true,
        source: '# Parameters\nlines = 4\n'
      })
    );
    expect(sync.record.injected).toBe('# Parameters\nlines = 4\n');
    expect(nb.cells.map(c => c.count)).toEqual([null, null]); // the injected cell takes no number
    expect(parametersText({ on: true, none: null, xs: [1, 'a'], r: 0.5 })).toBe(
      "on = True, none = None, xs = [1, 'a'], r = 0.5"
    );
  });
});

describe('plain language', () => {
  const diag = (fields: Partial<IEvent>): IEvent =>
    ({
      v: 1,
      job: 'j',
      step: 's',
      seq: 1,
      ts: 0,
      type: 'log',
      stream: 'stderr',
      ...fields
    }) as IEvent;

  it('shows a diagnostic in the server’s words, keyed on its code, reading no English', () => {
    const text =
      "The image of step 's' could not be downloaded: check the `image:` tag. (Kubernetes: ImagePullBackOff: x)\n";
    expect(plainDiagnostic(diag({ reason: 'image_pull', text }))).toEqual({
      kind: 'warning',
      reason: 'image_pull',
      text: "The image of step 's' could not be downloaded: check the image: tag. (Kubernetes: ImagePullBackOff: x)"
    });
    // A code the Lab does not know (a newer server): the words still show, no code kept.
    expect(plainDiagnostic(diag({ reason: 'FailedScheduling' as any, text: 'words\n' }))).toEqual({
      kind: 'warning',
      text: 'words'
    });
  });

  it('words an error from its message, whatever the message says', () => {
    // Keyed on the code: a timeout's words are the server's, never re-parsed.
    expect(
      plainError(
        { reason: 'timeout', message: "step 'x' timed out after 2h; raise `timeout:` on step 'x'" },
        'x'
      )
    ).toBe("step 'x' timed out after 2h; raise timeout: on step 'x'");
    // Words that look like another failure do not change what is shown.
    expect(plainError({ reason: 'lost', message: 'out of memory? timed out?' }, 'x')).toBe(
      'out of memory? timed out?'
    );
    expect(
      plainError(
        { reason: 'exception', ename: 'ValueError', evalue: 'bad', message: 'cell 2 raised' },
        'x',
        true
      )
    ).toBe("This cell raised ValueError: bad. Step 'x' stopped here.");
    expect(plainError(null, 'x')).toBe("step 'x' failed");
  });
});
