import {
  applyEvent,
  explainError,
  logLines,
  plainMessage,
  ProgressTracker,
  REASON_HINTS,
  stepFraction
} from '../jobstate';
import { IEvent, REASONS } from '../tokens';
import { job, step } from './jobfakes';

let seq = 0;
function ev(type: string, fields: Partial<IEvent> = {}): IEvent {
  seq += 1;
  return { v: 1, job: 'j1', step: 'train', seq, ts: 1_790_000_000, type, ...fields } as IEvent;
}

describe('ProgressTracker', () => {
  it('counts the cells each step finished, per attempt, once each', () => {
    const t = new ProgressTracker();
    t.add(ev('step.start', { attempt: 1 }));
    t.add(ev('cell.end', { attempt: 1, cell_index: 2 }));
    const again = ev('cell.end', { attempt: 1, cell_index: 3 });
    t.add(again);
    t.add(again); // a replayed event is not counted twice
    t.add(ev('cell.end', { attempt: 1, cell_index: null })); // papermill's injected cell
    t.add(ev('cell.end', { step: 'load', attempt: 1, cell_index: 0 }));
    expect(t.cellsDone('train')).toBe(2);
    expect(t.cellsDone('train', [3, 4])).toBe(1); // cell 2 is not one of the step's own
    expect(t.cellsDone('load')).toBe(1);
    expect(t.cellsDone('report')).toBe(0);
    expect(t.lastSeq).toBe(seq);
    t.add(ev('step.retry', { attempt: 1, next_attempt: 2 }));
    expect(t.cellsDone('train')).toBe(0); // the new attempt starts over
    t.add(ev('cell.end', { attempt: 1, cell_index: 5 })); // a late line of the old attempt
    t.add(ev('cell.end', { attempt: 2, cell_index: 2 }));
    expect(t.cellsDone('train')).toBe(1);
  });
});

describe('stepFraction', () => {
  it('is full once succeeded, empty while queued, by cells while running', () => {
    expect(stepFraction({ status: 'succeeded', cells: [1, 2] }, 0)).toBe(1);
    expect(stepFraction({ status: 'queued', cells: [1, 2] }, 2)).toBe(0);
    expect(stepFraction({ status: 'running', cells: [1, 2, 3, 4] }, 1)).toBe(0.25);
    expect(stepFraction({ status: 'running', cells: [1] }, 5)).toBe(1);
    expect(stepFraction({ status: 'running', cells: [] }, 0)).toBe(0.5);
    expect(stepFraction({ status: 'failed', cells: [1, 2] }, 1)).toBe(0.5);
  });
});

describe('applyEvent', () => {
  it('moves step and job statuses as the events say', () => {
    let j = job({
      status: 'queued',
      started: null,
      steps: [step({ name: 'load' }), step({ name: 'train', after: ['load'], retries: 1 })]
    });
    j = applyEvent(j, ev('job.start', { step: null }));
    expect(j.status).toBe('running');
    expect(j.started).toBe(new Date(1_790_000_000_000).toISOString());
    j = applyEvent(j, ev('step.start', { step: 'load', attempt: 1 }));
    expect(j.steps.map(s => s.status)).toEqual(['running', 'queued']);
    j = applyEvent(j, ev('step.end', { step: 'load', status: 'succeeded', exit_code: 0 }));
    j = applyEvent(j, ev('step.start', { step: 'train', attempt: 1 }));
    j = applyEvent(
      j,
      ev('step.retry', { attempt: 1, next_attempt: 2, error: { message: 'exit code 137' } })
    );
    expect(j.steps[1]).toMatchObject({ status: 'queued', attempt: 2 });
    j = applyEvent(j, ev('step.start', { attempt: 2 }));
    expect(j.steps[1]).toMatchObject({ status: 'running', attempt: 2, error: null });
    const error = { message: 'cell 3 raised ValueError: x', cell_index: 3 };
    j = applyEvent(j, ev('step.end', { status: 'failed', exit_code: 1, error }));
    j = applyEvent(
      j,
      ev('job.end', { step: null, status: 'failed', error: { ...error, step: 'train' } })
    );
    expect(j.status).toBe('failed');
    expect(j.steps[1]).toMatchObject({ status: 'failed', exit_code: 1, error });
    expect(j.error!.step).toBe('train');
    expect(j.last_seq).toBe(seq);
  });

  it('leaves the job alone for events that change no status', () => {
    const j = job({ steps: [step({ name: 'train' })] });
    expect(applyEvent(j, ev('cell.output', { output: {} }))).toBe(j);
  });
});

describe('logLines', () => {
  it('turns outputs, logs and step changes into log text', () => {
    const out = (output: any) => logLines(ev('cell.output', { output }));
    expect(out({ output_type: 'stream', name: 'stdout', text: 'hi\n' })).toEqual([
      { text: 'hi\n', kind: 'stdout' }
    ]);
    expect(out({ output_type: 'stream', name: 'stderr', text: ['a', 'b\n'] })).toEqual([
      { text: 'ab\n', kind: 'stderr' }
    ]);
    expect(
      out({
        output_type: 'error',
        ename: 'ValueError',
        evalue: 'x',
        traceback: ['Tb', 'ValueError: x']
      })
    ).toEqual([{ text: 'Tb\nValueError: x\n', kind: 'stderr' }]);
    expect(out({ output_type: 'execute_result', data: { 'text/plain': '42' } })).toEqual([
      { text: '42\n', kind: 'stdout' }
    ]);
    expect(out({ output_type: 'display_data', data: { 'image/png': 'iVBOR' } })[0].kind).toBe(
      'info'
    );
    expect(
      logLines(ev('log', { stream: 'stderr', text: 'FailedScheduling: 0/3 nodes\n' }))
    ).toEqual([{ text: 'FailedScheduling: 0/3 nodes\n', kind: 'stderr' }]);
    // Cells named as Lab numbers them: index 4 is Lab's cell 5.
    expect(logLines(ev('cell.start', { cell_index: 4 }))).toEqual([
      { text: '── cell 5 ──\n', kind: 'info' }
    ]);
    expect(logLines(ev('cell.start', { cell_index: null, injected: true }))).toEqual([]);
    // The duration is the step.start -> step.end span (the runner's own `duration` is not used).
    expect(
      logLines(ev('step.end', { status: 'succeeded', duration: 3.21, ts: 1075 }), 1000)[0].text
    ).toBe('── step succeeded in 1m15s ──\n');
    expect(
      logLines(ev('step.end', { status: 'failed', error: { message: 'cell 3 raised X: y' } }))[0]
        .text
    ).toBe('── step failed: cell 3 raised X: y ──\n');
    expect(logLines(ev('cell.end', {}))).toEqual([]);
    // A runner failure's traceback goes to the log; a cell's was already there.
    const crash = {
      message: 'the step could not run: OSError: x',
      traceback: ['Traceback\n', 'OSError: x\n']
    };
    expect(logLines(ev('step.end', { status: 'failed', error: crash })).map(l => l.text)).toEqual([
      'Traceback\nOSError: x\n',
      '── step failed: the step could not run: OSError: x ──\n'
    ]);
    const cellError = { ...crash, cell_index: 3 };
    expect(logLines(ev('step.end', { status: 'failed', error: cellError }))).toHaveLength(1);
  });
});

describe('explainError', () => {
  it('keeps the message and adds what its reason code means', () => {
    const oom = explainError({
      reason: 'oom',
      message: "the step ran out of memory: raise `memory:` on step 'train'"
    });
    expect(oom).toContain("The step ran out of memory: raise `memory:` on step 'train'.");
    expect(oom).toContain('needed more memory than it was given');
    // A diagnostic's code comes beside its words (a `log` event's `reason`).
    expect(
      explainError({ message: 'Waiting for a machine: no node has 8 free GPUs.' }, 'unschedulable')
    ).toContain('No machine in the cluster can take the step');
    expect(explainError({ message: 'The image could not be downloaded.' }, 'image_pull')).toContain(
      'container image could not be downloaded'
    );
    expect(
      explainError({ reason: 'timeout', message: "step 'train' timed out after 2m" })
    ).toContain('`timeout:` tag');
    expect(explainError({ reason: 'evicted', message: 'the node evicted it' })).toContain(
      'took its resources back'
    );
    expect(explainError({ reason: 'lost', message: 'gone' })).toContain('Re-run it');
  });

  it('reads the code, never the words', () => {
    // Words that name another failure add nothing without its code...
    expect(explainError({ message: 'the step ran out of memory; OOMKilled; timed out' })).toBe(
      'The step ran out of memory; OOMKilled; timed out.'
    );
    // ...and a code adds its meaning whatever the words say.
    expect(explainError({ reason: 'oom', message: 'stopped' })).toMatch(
      /^Stopped\. The step needed more memory/
    );
    // A raw Kubernetes reason is not a code: the server maps those (jupyter_ext/reasons.py).
    expect(explainError({ message: 'x' }, 'OOMKilled')).toBe('X.');
    for (const code of REASONS) {
      expect(REASON_HINTS).toHaveProperty(code);
    }
  });

  it('points at the code for an exception in a cell, and says nothing for no error', () => {
    expect(
      explainError({
        reason: 'exception',
        message: 'cell 3 raised ValueError: bad',
        ename: 'ValueError',
        cell_index: 3
      })
    ).toBe(
      'Cell 3 raised ValueError: bad. This error came from the code in that cell; its traceback is in the step log.'
    );
    expect(explainError({ reason: 'cancelled', message: 'cancelled' })).toBe('Cancelled.');
    expect(explainError(null)).toBe('');
    expect(plainMessage({ ename: 'KeyError', evalue: "'x'" })).toBe("KeyError: 'x'");
  });
});
