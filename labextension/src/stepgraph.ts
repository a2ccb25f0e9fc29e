/**
 * A job's steps as a picture: an SVG DAG, left to right, each node coloured by its status.
 * Clicking (or pressing Enter on) a node asks to show that step.
 */

import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';
import { edgePath, GraphError, IGraphLayout, layoutGraph } from './graphlayout';
import { IStep, STATUS_WORDS } from './tokens';

const SVG = 'http://www.w3.org/2000/svg';

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: { [key: string]: string | number } = {}
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    el.setAttribute(key, String(value));
  }
  return el;
}

/** Width of a node for the longest step name, within bounds (longer names get an ellipsis). */
export function nodeWidthFor(names: readonly string[]): number {
  const longest = Math.max(0, ...names.map(n => n.length));
  return Math.min(220, Math.max(110, 7.5 * longest + 44));
}

export class StepGraph extends Widget {
  private readonly svgNode: SVGSVGElement;
  private readonly message = document.createElement('div');
  private shape = '';
  private nodes = new Map<string, SVGGElement>();
  private readonly selectedSignal = new Signal<this, string>(this);

  constructor() {
    super();
    this.addClass('jp-ext-StepGraph');
    this.svgNode = svg('svg', { role: 'img' });
    this.svgNode.setAttribute('data-testid', 'jupyter-ext-step-graph');
    this.svgNode.classList.add('jp-ext-StepGraph-svg');
    this.message.className = 'jp-ext-StepGraph-message';
    this.message.hidden = true;
    this.node.appendChild(this.svgNode);
    this.node.appendChild(this.message);
  }

  /** Emitted with a step's name when the user picks its node. */
  get stepSelected(): ISignal<this, string> {
    return this.selectedSignal;
  }

  /** The SVG element (for tests and screenshots). */
  get svgElement(): SVGSVGElement {
    return this.svgNode;
  }

  /**
   * Show these steps. The layout is computed again only when the graph's shape changed;
   * a status change only recolours the nodes it concerns.
   */
  setSteps(steps: readonly IStep[]): void {
    const shape = JSON.stringify(steps.map(s => [s.name, s.after]));
    if (shape !== this.shape) {
      this.shape = shape;
      this.draw(steps);
    }
    for (const step of steps) {
      const node = this.nodes.get(step.name);
      if (!node) {
        continue;
      }
      node.setAttribute('data-status', step.status);
      const label = STATUS_WORDS[step.status] ?? step.status;
      const attempt = step.reused_from
        ? ' (reused)'
        : step.attempt > 1
          ? ` (attempt ${step.attempt})`
          : '';
      node.querySelector('.jp-ext-StepGraph-status')!.textContent = `${label}${attempt}`;
      node.setAttribute('aria-label', `Step ${step.name}: ${label}${attempt}`);
      node.querySelector('title')!.textContent = `${step.name}: ${label}${attempt}`;
    }
  }

  private draw(steps: readonly IStep[]): void {
    this.svgNode.textContent = '';
    this.nodes.clear();
    let layout: IGraphLayout;
    try {
      layout = layoutGraph(steps, { nodeWidth: nodeWidthFor(steps.map(s => s.name)) });
      this.message.hidden = true;
    } catch (error) {
      if (!(error instanceof GraphError)) {
        throw error;
      }
      this.message.textContent = `The step graph cannot be drawn: ${error.message}`;
      this.message.hidden = false;
      return;
    }
    const { width, height } = layout;
    this.svgNode.setAttribute('viewBox', `0 0 ${width} ${height}`);
    this.svgNode.setAttribute('width', String(width));
    this.svgNode.setAttribute('height', String(height));
    this.svgNode.setAttribute(
      'aria-label',
      `Step graph: ${steps.length} step${steps.length === 1 ? '' : 's'}`
    );
    const defs = svg('defs');
    const marker = svg('marker', {
      id: `jp-ext-arrow-${this.id || Math.random().toString(36).slice(2)}`,
      viewBox: '0 0 10 10',
      refX: 10,
      refY: 5,
      markerWidth: 7,
      markerHeight: 7,
      orient: 'auto-start-reverse'
    });
    marker.appendChild(svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'jp-ext-StepGraph-arrow' }));
    defs.appendChild(marker);
    this.svgNode.appendChild(defs);
    const edges = svg('g', { class: 'jp-ext-StepGraph-edges' });
    for (const edge of layout.edges) {
      const path = svg('path', {
        d: edgePath(edge),
        class: 'jp-ext-StepGraph-edge',
        'marker-end': `url(#${marker.id})`
      });
      path.setAttribute('data-from', edge.from);
      path.setAttribute('data-to', edge.to);
      edges.appendChild(path);
    }
    this.svgNode.appendChild(edges);
    for (const laid of layout.nodes) {
      const g = svg('g', {
        class: 'jp-ext-StepGraph-node',
        transform: `translate(${laid.x},${laid.y})`,
        tabindex: 0,
        role: 'button'
      });
      g.setAttribute('data-testid', 'jupyter-ext-graph-node');
      g.setAttribute('data-step', laid.name);
      g.appendChild(svg('title'));
      g.appendChild(
        svg('rect', { width: laid.width, height: laid.height, rx: 6, ry: 6 })
      ).classList.add('jp-ext-StepGraph-box');
      const name = svg('text', { x: 10, y: 15, class: 'jp-ext-StepGraph-name' });
      const room = Math.floor((laid.width - 20) / 7.5);
      name.textContent = laid.name.length > room ? `${laid.name.slice(0, room - 1)}…` : laid.name;
      g.appendChild(name);
      g.appendChild(svg('text', { x: 10, y: 29, class: 'jp-ext-StepGraph-status' }));
      const pick = () => this.selectedSignal.emit(laid.name);
      g.addEventListener('click', pick);
      g.addEventListener('keydown', (event: KeyboardEvent) => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          pick();
        }
      });
      this.svgNode.appendChild(g);
      this.nodes.set(laid.name, g);
    }
  }
}
