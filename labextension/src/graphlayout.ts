/**
 * A layered (Sugiyama-style) layout of a job's step graph, left to right.
 *
 * Pure functions, no DOM: a step's layer is the length of the longest path of `after`
 * dependencies leading to it, so every edge points rightwards; within a layer, nodes are
 * ordered by a few barycenter sweeps to keep edges from crossing. Nodes of one layer sit in
 * one column, one row apart, so no two nodes ever overlap.
 */

/** What the layout needs of a step. */
export interface IGraphStep {
  name: string;
  after: readonly string[];
}

export interface ILayoutOptions {
  nodeWidth: number;
  nodeHeight: number;
  /** Horizontal space between two layers (where the edges run). */
  layerGap: number;
  /** Vertical space between two nodes of one layer. */
  rowGap: number;
  margin: number;
}

export interface IPositionedNode {
  name: string;
  layer: number;
  /** Position within its layer, top to bottom. */
  order: number;
  /** Top-left corner. */
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface IPoint {
  x: number;
  y: number;
}

export interface IPositionedEdge {
  from: string;
  to: string;
  /** From the middle of the source's right side to the middle of the target's left side. */
  start: IPoint;
  end: IPoint;
}

export interface IGraphLayout {
  nodes: IPositionedNode[];
  edges: IPositionedEdge[];
  width: number;
  height: number;
}

export const DEFAULT_LAYOUT: ILayoutOptions = {
  nodeWidth: 150,
  nodeHeight: 36,
  layerGap: 56,
  rowGap: 16,
  margin: 8
};

/** Raised for a graph that cannot be drawn in layers (the planner refuses these too). */
export class GraphError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GraphError';
  }
}

/**
 * Each step's layer: 0 for steps that depend on nothing, else one more than the deepest
 * step it comes after. Dependencies on steps not in the list are ignored.
 */
export function assignLayers(steps: readonly IGraphStep[]): Map<string, number> {
  const byName = new Map<string, IGraphStep>();
  for (const step of steps) {
    if (byName.has(step.name)) {
      throw new GraphError(`step ${JSON.stringify(step.name)} appears twice`);
    }
    byName.set(step.name, step);
  }
  const layers = new Map<string, number>();
  const visiting: string[] = [];
  const visit = (name: string): number => {
    const known = layers.get(name);
    if (known !== undefined) {
      return known;
    }
    const at = visiting.indexOf(name);
    if (at >= 0) {
      const cycle = [...visiting.slice(at), name].join(' -> ');
      throw new GraphError(`steps depend on each other in a circle: ${cycle}`);
    }
    visiting.push(name);
    let layer = 0;
    for (const dep of byName.get(name)!.after) {
      if (byName.has(dep)) {
        layer = Math.max(layer, visit(dep) + 1);
      }
    }
    visiting.pop();
    layers.set(name, layer);
    return layer;
  };
  // Iterative over the roots, recursive along paths: a path is as long as the DAG is deep.
  for (const step of steps) {
    visit(step.name);
  }
  return layers;
}

/** Lay the steps out: positions of nodes and edges, and the size of the whole picture. */
export function layoutGraph(
  steps: readonly IGraphStep[],
  options: Partial<ILayoutOptions> = {}
): IGraphLayout {
  const opt = { ...DEFAULT_LAYOUT, ...options };
  const layerOf = assignLayers(steps);
  const names = new Set(steps.map(s => s.name));
  const edges: [string, string][] = [];
  for (const step of steps) {
    for (const dep of new Set(step.after)) {
      if (names.has(dep)) {
        edges.push([dep, step.name]);
      }
    }
  }
  const layerCount = steps.length ? Math.max(...layerOf.values()) + 1 : 0;
  const columns: string[][] = Array.from({ length: layerCount }, () => []);
  for (const step of steps) {
    columns[layerOf.get(step.name)!].push(step.name); // the given order breaks ties
  }
  orderByBarycenter(columns, edges);

  const tallest = Math.max(0, ...columns.map(c => c.length));
  const rowPitch = opt.nodeHeight + opt.rowGap;
  const nodes: IPositionedNode[] = [];
  const at = new Map<string, IPositionedNode>();
  columns.forEach((column, layer) => {
    // Centre shorter columns against the tallest one.
    const offset = ((tallest - column.length) * rowPitch) / 2;
    column.forEach((name, order) => {
      const node = {
        name,
        layer,
        order,
        x: opt.margin + layer * (opt.nodeWidth + opt.layerGap),
        y: opt.margin + offset + order * rowPitch,
        width: opt.nodeWidth,
        height: opt.nodeHeight
      };
      nodes.push(node);
      at.set(name, node);
    });
  });
  return {
    nodes,
    edges: edges.map(([from, to]) => {
      const a = at.get(from)!;
      const b = at.get(to)!;
      return {
        from,
        to,
        start: { x: a.x + a.width, y: a.y + a.height / 2 },
        end: { x: b.x, y: b.y + b.height / 2 }
      };
    }),
    width: layerCount
      ? 2 * opt.margin + layerCount * opt.nodeWidth + (layerCount - 1) * opt.layerGap
      : 0,
    height: tallest ? 2 * opt.margin + tallest * rowPitch - opt.rowGap : 0
  };
}

/**
 * Reorder each layer by the mean position of its neighbours in the layer before (then, on
 * the way back, after), a few times over: the classic heuristic against edge crossings.
 */
function orderByBarycenter(columns: string[][], edges: readonly [string, string][]): void {
  const parents = new Map<string, string[]>();
  const children = new Map<string, string[]>();
  for (const [from, to] of edges) {
    (parents.get(to) ?? parents.set(to, []).get(to)!).push(from);
    (children.get(from) ?? children.set(from, []).get(from)!).push(to);
  }
  const position = new Map<string, number>();
  const remember = (column: string[]) => column.forEach((n, i) => position.set(n, i));
  columns.forEach(remember);
  const sweep = (column: string[], neighbours: Map<string, string[]>) => {
    const keyed = column.map((name, index) => {
      const near = (neighbours.get(name) ?? []).map(n => position.get(n)!);
      const key = near.length ? near.reduce((a, b) => a + b, 0) / near.length : index;
      return { name, key, index };
    });
    keyed.sort((a, b) => a.key - b.key || a.index - b.index);
    keyed.forEach((k, i) => (column[i] = k.name));
    remember(column);
  };
  for (let round = 0; round < 4; round++) {
    for (let l = 1; l < columns.length; l++) {
      sweep(columns[l], parents);
    }
    for (let l = columns.length - 2; l >= 0; l--) {
      sweep(columns[l], children);
    }
  }
}

/** The SVG path of an edge: a horizontal S-curve from `start` to `end`. */
export function edgePath(edge: Pick<IPositionedEdge, 'start' | 'end'>): string {
  const { start, end } = edge;
  const bend = Math.max(20, (end.x - start.x) / 2);
  return (
    `M${start.x},${start.y} ` +
    `C${start.x + bend},${start.y} ${end.x - bend},${end.y} ${end.x},${end.y}`
  );
}
