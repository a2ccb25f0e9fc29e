/**
 * An executed notebook's HTML, shown in the main area inside a sandboxed frame.
 *
 * The HTML is user content: the frame gets no `allow-same-origin` and no `allow-scripts`, so
 * nothing in it can run or reach JupyterLab's page, cookies or API. Its scripts and remote
 * resources (MathJax, require.js from a CDN) are taken out first: they could not run anyway,
 * and each blocked one would be an error in the browser console.
 */

import { Widget } from '@lumino/widgets';

/** Elements that run code or load from elsewhere; a static page needs none of them. */
const ACTIVE = 'script, iframe, object, embed, base, meta[http-equiv], link:not([href^="data:"])';

/** The HTML without scripts or remote resources: what stays is the page as it was saved. */
export function staticHtml(html: string): string {
  const doc = new DOMParser().parseFromString(html, 'text/html');
  doc.querySelectorAll(ACTIVE).forEach(el => el.remove());
  return `<!DOCTYPE html>\n${doc.documentElement.outerHTML}`;
}

export class HtmlView extends Widget {
  readonly frame = document.createElement('iframe');

  constructor(html: string, label: string) {
    super();
    this.addClass('jp-ext-HtmlView');
    this.title.label = label;
    this.title.closable = true;
    this.frame.setAttribute('sandbox', '');
    this.frame.setAttribute('referrerpolicy', 'no-referrer');
    this.frame.title = label;
    this.frame.srcdoc = staticHtml(html);
    this.node.appendChild(this.frame);
  }
}
