import {
  assignLayers,
  DEFAULT_LAYOUT,
  edgePath,
  GraphError,
  IGraphLayout,
  IPositionedNode,
  layoutGraph
} from '../graphlayout';

const s = (name: string, ...after: string[]) => ({ name, after });

function overlaps(a: IPositionedNode, b: IPositionedNode): boolean {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}

function expectNoOverlap(layout: IGraphLayout): void {
  for (let i = 0; i < layout.nodes.length; i++) {
    for (let j = i + 1; j < layout.nodes.length; j++) {
      expect(overlaps(layout.nodes[i], layout.nodes[j])).toBe(false);
    }
  }
  for (const n of layout.nodes) {
    expect(n.x).toBeGreaterThanOrEqual(0);
    expect(n.y).toBeGreaterThanOrEqual(0);
    expect(n.x + n.width).toBeLessThanOrEqual(layout.width);
    expect(n.y + n.height).toBeLessThanOrEqual(layout.height);
  }
}

/** Count pairs of edges between the same two layers whose ends swap order (they cross). */
function crossings(layout: IGraphLayout): number {
  const at = new Map(layout.nodes.map(n => [n.name, n]));
  let count = 0;
  for (let i = 0; i < layout.edges.length; i++) {
    for (let j = i + 1; j < layout.edges.length; j++) {
      const [a, b] = [layout.edges[i], layout.edges[j]];
      const [a1, a2, b1, b2] = [at.get(a.from)!, at.get(a.to)!, at.get(b.from)!, at.get(b.to)!];
      if (a1.layer !== b1.layer || a2.layer !== b2.layer) {
        continue;
      }
      if ((a1.order - b1.order) * (a2.order - b2.order) < 0) {
        count++;
      }
    }
  }
  return count;
}

describe('assignLayers', () => {
  it('puts each step one layer after the deepest step it comes after (longest path)', () => {
    // load -> clean -> train -> report, and load -> report directly: report is still last.
    const layers = assignLayers([
      s('report', 'train', 'load'),
      s('train', 'clean'),
      s('clean', 'load'),
      s('load')
    ]);
    expect(Object.fromEntries(layers)).toEqual({ load: 0, clean: 1, train: 2, report: 3 });
  });

  it('puts independent steps in layer 0 and ignores dependencies on unknown steps', () => {
    const layers = assignLayers([s('a'), s('b', 'elsewhere'), s('c', 'a')]);
    expect(Object.fromEntries(layers)).toEqual({ a: 0, b: 0, c: 1 });
  });

  it('names the steps of a cycle and refuses duplicates', () => {
    expect(() => assignLayers([s('a', 'c'), s('b', 'a'), s('c', 'b')])).toThrow(
      new GraphError('steps depend on each other in a circle: a -> c -> b -> a')
    );
    expect(() => assignLayers([s('a'), s('a')])).toThrow('step "a" appears twice');
  });

  it('handles a deep chain without blowing up', () => {
    const chain = Array.from({ length: 2000 }, (_, i) => s(`s${i}`, ...(i ? [`s${i - 1}`] : [])));
    expect(assignLayers(chain).get('s1999')).toBe(1999);
  });
});

describe('layoutGraph', () => {
  it('lays a diamond out left to right with every edge pointing right', () => {
    const layout = layoutGraph([s('load'), s('a', 'load'), s('b', 'load'), s('join', 'a', 'b')]);
    const at = Object.fromEntries(layout.nodes.map(n => [n.name, n]));
    expect([at.load.layer, at.a.layer, at.b.layer, at.join.layer]).toEqual([0, 1, 1, 2]);
    expect(at.a.x).toBe(at.b.x);
    expect(at.a.y).not.toBe(at.b.y);
    expect(layout.edges.map(e => `${e.from}->${e.to}`).sort()).toEqual([
      'a->join',
      'b->join',
      'load->a',
      'load->b'
    ]);
    for (const e of layout.edges) {
      expect(e.end.x).toBeGreaterThan(e.start.x);
      expect(e.start.x).toBe(at[e.from].x + at[e.from].width);
      expect(e.end.y).toBe(at[e.to].y + at[e.to].height / 2);
    }
    // The lone nodes are centred on the pair.
    expect(at.load.y + at.load.height / 2).toBeCloseTo((at.a.y + at.b.y + at.b.height) / 2);
    expectNoOverlap(layout);
  });

  it('never overlaps nodes, whatever the graph', () => {
    // A pseudo-random DAG: each step after up to 3 earlier ones.
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const steps = Array.from({ length: 60 }, (_, i) => {
      const after = new Set<string>();
      for (let k = 0; k < 3 && i > 0; k++) {
        if (rand() < 0.6) {
          after.add(`s${Math.floor(rand() * i)}`);
        }
      }
      return s(`s${i}`, ...after);
    });
    const layout = layoutGraph(steps, { nodeWidth: 100, nodeHeight: 30, rowGap: 4, layerGap: 20 });
    expect(layout.nodes).toHaveLength(60);
    expectNoOverlap(layout);
    const at = new Map(layout.nodes.map(n => [n.name, n]));
    for (const step of steps) {
      for (const dep of step.after) {
        expect(at.get(dep)!.layer).toBeLessThan(at.get(step.name)!.layer);
      }
    }
  });

  it('orders a layer to avoid crossings the input order would cause', () => {
    // Given in the "wrong" order, the children would cross their parents' edges.
    const steps = [s('p1'), s('p2'), s('c2', 'p2'), s('c1', 'p1')];
    expect(crossings(layoutGraph(steps))).toBe(0);
    const wide = [s('a'), s('b'), s('c'), s('z', 'c'), s('y', 'b'), s('x', 'a')];
    expect(crossings(layoutGraph(wide))).toBe(0);
  });

  it('sizes the picture to fit, and is empty for no steps', () => {
    const o = DEFAULT_LAYOUT;
    const layout = layoutGraph([s('a'), s('b', 'a')]);
    expect(layout.width).toBe(2 * o.margin + 2 * o.nodeWidth + o.layerGap);
    expect(layout.height).toBe(2 * o.margin + o.nodeHeight);
    expect(layoutGraph([])).toEqual({ nodes: [], edges: [], width: 0, height: 0 });
  });

  it('draws one edge per dependency even when a step names it twice', () => {
    expect(layoutGraph([s('a'), s('b', 'a', 'a')]).edges).toHaveLength(1);
  });

  it('draws edges as curves from start to end', () => {
    expect(edgePath({ start: { x: 0, y: 10 }, end: { x: 100, y: 50 } })).toBe(
      'M0,10 C50,10 50,50 100,50'
    );
  });
});
