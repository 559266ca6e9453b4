// A small Markdown renderer for model answers that builds DOM nodes and never
// parses HTML: whatever the model writes (<script>, <img onerror>...) ends up
// as text. Fenced code blocks (with a copy button), headings, lists, quotes,
// paragraphs, `code`, **bold**, *italic* and [links](https://...) (http and
// https only). It is re-run on the whole answer as it grows: an unclosed
// fence or ** simply shows as it is until its end arrives.
(() => {
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  // Inline markup: code first (nothing inside it is markup), then links, bold, italic.
  const INLINE = /`([^`\n]+)`|\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)|\*\*([^*\n]+)\*\*|\*([^*\n]+)\*|(?<!\w)_([^_\n]+)_(?!\w)/g;

  function inline(parent, text) {
    let last = 0;
    for (const m of text.matchAll(INLINE)) {
      if (m.index > last) parent.append(text.slice(last, m.index));
      if (m[1] !== undefined) parent.append(el('code', '', m[1]));
      else if (m[2] !== undefined) {
        const link = el('a', '', m[2]);
        link.href = m[3];  // only http(s): the pattern admits nothing else
        link.rel = 'noopener noreferrer';
        link.target = '_blank';
        parent.append(link);
      } else if (m[4] !== undefined) inline(parent.appendChild(el('strong')), m[4]);
      else parent.append(el('em', '', m[5] !== undefined ? m[5] : m[6]));
      last = m.index + m[0].length;
    }
    if (last < text.length) parent.append(text.slice(last));
  }

  function codeBlock(code, language) {
    const wrap = el('div', 'code');
    const copy = el('button', 'copy', 'Copy');
    copy.type = 'button';
    copy.addEventListener('click', async () => {
      try { await navigator.clipboard.writeText(code); copy.textContent = 'Copied'; }
      catch (e) { copy.textContent = 'Select and copy'; }
      setTimeout(() => { copy.textContent = 'Copy'; }, 1500);
    });
    const pre = el('pre');
    const body = el('code', language ? `language-${language}` : '', code);
    pre.append(body);
    wrap.append(copy, pre);
    return wrap;
  }

  function render(target, source) {
    const root = document.createDocumentFragment();
    const lines = source.split('\n');
    let paragraph = [];
    let list = null;
    const flush = () => {
      if (paragraph.length) {
        const p = el('p');
        paragraph.forEach((line, i) => { if (i) p.append(el('br')); inline(p, line); });
        root.append(p);
        paragraph = [];
      }
    };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const fence = line.match(/^\s*```\s*([\w+-]*)\s*$/);
      if (fence) {
        flush(); list = null;
        const code = [];
        for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i++) code.push(lines[i]);
        root.append(codeBlock(code.join('\n'), fence[1]));
        continue;
      }
      const heading = line.match(/^(#{1,4})\s+(.*)$/);
      const bullet = line.match(/^\s*[-*+]\s+(.*)$/);
      const numbered = line.match(/^\s*(\d+)[.)]\s+(.*)$/);
      const quote = line.match(/^>\s?(.*)$/);
      if (heading) {
        flush(); list = null;
        inline(root.appendChild(el(`h${heading[1].length + 2}`)), heading[2]);
      } else if (bullet || numbered) {
        flush();
        const tag = bullet ? 'UL' : 'OL';
        if (!list || list.tagName !== tag) list = root.appendChild(el(tag.toLowerCase()));
        inline(list.appendChild(el('li')), bullet ? bullet[1] : numbered[2]);
      } else if (quote) {
        flush(); list = null;
        inline(root.appendChild(el('blockquote')), quote[1]);
      } else if (!line.trim()) {
        flush(); list = null;
      } else {
        list = null;
        paragraph.push(line);
      }
    }
    flush();
    target.replaceChildren(root);
  }

  window.renderMarkdown = render;
})();
