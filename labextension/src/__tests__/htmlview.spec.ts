import { HtmlView, staticHtml } from '../htmlview';

describe('HtmlView', () => {
  const page =
    '<html><head><script src="https://cdn/require.js"></script>' +
    '<link rel="stylesheet" href="https://cdn/x.css"><style>p{color:red}</style>' +
    '<base href="https://elsewhere/"><meta http-equiv="refresh" content="0;url=https://x">' +
    '</head><body><p>loss 0.1</p><img src="data:image/png;base64,AAAA">' +
    '<script>parent.document.title = "pwned"</script><iframe src="https://x"></iframe></body></html>';

  it('keeps the page but no scripts, frames or remote resources', () => {
    const out = staticHtml(page);
    expect(out).toContain('<p>loss 0.1</p>');
    expect(out).toContain('<style>p{color:red}</style>');
    expect(out).toContain('<img src="data:image/png;base64,AAAA">');
    for (const gone of ['<script', '<link', '<base', '<meta', '<iframe', 'pwned']) {
      expect(out).not.toContain(gone);
    }
  });

  it('shows it in a frame sandboxed from the page', () => {
    const view = new HtmlView(page, 'train: executed');
    expect(view.frame.getAttribute('sandbox')).toBe('');
    expect(view.frame.srcdoc).toContain('loss 0.1');
    expect(view.frame.srcdoc).not.toContain('<script');
    expect(view.title.label).toBe('train: executed');
    expect(view.title.closable).toBe(true);
  });
});
