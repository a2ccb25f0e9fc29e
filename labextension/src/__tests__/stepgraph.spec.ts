import { nodeWidthFor, StepGraph } from '../stepgraph';
import { step } from './jobfakes';

describe('StepGraph', () => {
  const steps = () => [
    step({ name: 'load', status: 'succeeded' }),
    step({ name: 'train', after: ['load'], status: 'running', attempt: 2 }),
    step({ name: 'eval', after: ['load'], status: 'queued' }),
    step({ name: 'report', after: ['train', 'eval'], status: 'queued' })
  ];

  it('draws one node per step with its status, and one arrow per dependency', () => {
    const graph = new StepGraph();
    graph.setSteps(steps());
    const svg = graph.node.querySelector('[data-testid="jupyter-ext-step-graph"]')!;
    expect(svg.tagName.toLowerCase()).toBe('svg');
    const nodes = Array.from(svg.querySelectorAll('[data-testid="jupyter-ext-graph-node"]'));
    expect(nodes.map(n => [n.getAttribute('data-step'), n.getAttribute('data-status')])).toEqual([
      ['load', 'succeeded'],
      ['train', 'running'],
      ['eval', 'queued'],
      ['report', 'queued']
    ]);
    const train = nodes[1];
    expect(train.querySelector('.jp-ext-StepGraph-status')!.textContent).toBe(
      'running (attempt 2)'
    );
    expect(train.getAttribute('aria-label')).toBe('Step train: running (attempt 2)');
    const edges = Array.from(svg.querySelectorAll('.jp-ext-StepGraph-edge'));
    expect(
      edges.map(e => `${e.getAttribute('data-from')}->${e.getAttribute('data-to')}`).sort()
    ).toEqual(['eval->report', 'load->eval', 'load->train', 'train->report']);
    expect(svg.getAttribute('viewBox')).toMatch(/^0 0 \d+ \d+$/);
  });

  it('recolours nodes in place when only statuses change, and redraws when the shape does', () => {
    const graph = new StepGraph();
    graph.setSteps(steps());
    const before = graph.node.querySelector('[data-step="train"]');
    const next = steps();
    next[1].status = 'failed';
    graph.setSteps(next);
    const after = graph.node.querySelector('[data-step="train"]')!;
    expect(after).toBe(before);
    expect(after.getAttribute('data-status')).toBe('failed');
    graph.setSteps([...next, step({ name: 'publish', after: ['report'] })]);
    expect(graph.node.querySelector('[data-step="train"]')).not.toBe(before);
    expect(graph.node.querySelectorAll('[data-testid="jupyter-ext-graph-node"]')).toHaveLength(5);
  });

  it('tells which step was picked, by click or keyboard', () => {
    const graph = new StepGraph();
    graph.setSteps(steps());
    const picked: string[] = [];
    graph.stepSelected.connect((_, name) => picked.push(name));
    graph.node.querySelector('[data-step="eval"]')!.dispatchEvent(new MouseEvent('click'));
    graph.node
      .querySelector('[data-step="report"]')!
      .dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter' }));
    expect(picked).toEqual(['eval', 'report']);
  });

  it('says why a graph cannot be drawn instead of drawing it', () => {
    const graph = new StepGraph();
    graph.setSteps([step({ name: 'a', after: ['b'] }), step({ name: 'b', after: ['a'] })]);
    const message = graph.node.querySelector('.jp-ext-StepGraph-message') as HTMLElement;
    expect(message.hidden).toBe(false);
    expect(message.textContent).toContain('a -> b -> a');
    expect(graph.node.querySelectorAll('[data-testid="jupyter-ext-graph-node"]')).toHaveLength(0);
  });

  it('shortens long names to fit their node', () => {
    expect(nodeWidthFor(['a'])).toBe(110);
    expect(nodeWidthFor(['x'.repeat(100)])).toBe(220);
    const graph = new StepGraph();
    const long = 'preprocess_the_very_large_dataset_before_training';
    graph.setSteps([step({ name: long })]);
    const text = graph.node.querySelector('.jp-ext-StepGraph-name')!.textContent!;
    expect(text.endsWith('…')).toBe(true);
    expect(text.length).toBeLessThan(long.length);
    expect(graph.node.querySelector('title')!.textContent).toBe(`${long}: queued`);
  });
});
