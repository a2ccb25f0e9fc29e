/**
 * Answers of `POST tags/check` for the Lab's tests, written as the server answers them
 * (tests/server/test_tagcheck.py checks the server; these only feed the views).
 */

import type { ICellInfo, INotebookSteps, IStepInfo } from '../tagcheck';

/** A code cell of an answer. */
export function cellInfo(index: number, over: Partial<ICellInfo> = {}): ICellInfo {
  return { index, tags: [], role: null, step: null, opens: false, problems: [], ...over };
}

/** A step of an answer. */
export function stepInfo(name: string, cells: number[], over: Partial<IStepInfo> = {}): IStepInfo {
  return {
    name,
    first_cell: cells[0],
    openers: [cells[0]],
    cells,
    metrics_cells: [],
    after: [],
    settings: {},
    limits: {},
    ...over
  };
}

/** A whole answer. */
export function answer(over: Partial<INotebookSteps> = {}): INotebookSteps {
  return {
    single: false,
    cells: [],
    steps: [],
    edges: [],
    problems: [],
    warnings: [],
    parameters_cells: [],
    prelude_cells: [],
    skipped_cells: [],
    edit: null,
    ...over
  };
}

/** The server's answer for [parameters], [step:load, memory:2Gi], [] (as it answered it). */
export function loadNotebook(): INotebookSteps {
  return answer({
    cells: [
      cellInfo(0, { tags: ['parameters'], role: 'parameters' }),
      cellInfo(1, { tags: ['step:load', 'memory:2Gi'], role: 'step', step: 'load', opens: true }),
      cellInfo(2, { step: 'load' })
    ],
    steps: [stepInfo('load', [1, 2], { settings: { memory: '2Gi' } })],
    parameters_cells: [0]
  });
}
