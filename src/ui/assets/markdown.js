// A small, safe Markdown subset for agent output, which is untrusted:
// headings, paragraphs, lists, block quotes, fenced code, inline code,
// bold, italics and links. It builds DOM nodes only (createElement and
// text nodes), never parses HTML, so markup in the text stays text. Links
// are kept only when they are absolute http(s) URLs, and open with
// rel=noopener noreferrer; images are never loaded (their alt text and
// address are shown as text instead).
//
// Streaming: `StreamingMarkdown` renders a growing text append-only. The
// blocks before the last blank line outside a code fence are final; they
// are rendered once and never touched again. Only the last, unfinished
// block is rendered again when text arrives, at most once per frame, so a
// transcript of megabytes stays responsive.

/** The URL if it is an absolute http(s) URL, else null. */
export function safeHref(url) {
  let u;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
  return u.href;
}

function link(text, url) {
  const href = safeHref(url);
  if (!href) return document.createTextNode(`${text} (${url})`);
  const a = document.createElement('a');
  a.href = href;
  a.rel = 'noopener noreferrer nofollow';
  a.target = '_blank';
  a.textContent = text;
  return a;
}

// Inline spans, first match wins at each position.
const INLINE = /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)|!\[([^\]]*)\]\(([^)\s]*)[^)]*\)|\[([^\]]+)\]\(([^)\s]+)\)|\*\*([^*]+)\*\*|__([^_]+)__|\*([^*\s][^*]*)\*|_([^_\s][^_]*)_|(https?:\/\/[^\s<>()]+)/g;

/** Inline Markdown of `text` appended to `parent`. */
export function renderInline(parent, text) {
  let last = 0;
  // A fresh matcher per call: the calls nest (bold inside a link...), and a
  // shared /g regex would lose its place.
  const inline = new RegExp(INLINE.source, 'g');
  for (let m = inline.exec(text); m; m = inline.exec(text)) {
    if (m.index > last) parent.append(document.createTextNode(text.slice(last, m.index)));
    if (m[1]) {
      const code = document.createElement('code');
      code.textContent = m[2];
      parent.append(code);
    } else if (m[4] !== undefined && m[0].startsWith('!')) {
      // An image: never loaded; its alt text and address as text.
      const span = document.createElement('span');
      span.className = 'image-ref';
      span.textContent = `[image: ${m[3]}] (${m[4]})`;
      parent.append(span);
    } else if (m[5] !== undefined) {
      parent.append(link(m[5], m[6]));
    } else if (m[7] !== undefined || m[8] !== undefined) {
      const b = document.createElement('strong');
      renderInline(b, m[7] ?? m[8]);
      parent.append(b);
    } else if (m[9] !== undefined || m[10] !== undefined) {
      const i = document.createElement('em');
      renderInline(i, m[9] ?? m[10]);
      parent.append(i);
    } else if (m[11] !== undefined) {
      parent.append(link(m[11], m[11]));
    }
    last = m.index + m[0].length;
  }
  if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
}

const FENCE = /^\s{0,3}(```|~~~)/;

/** Block Markdown of `text`, appended to `parent`. */
export function renderBlocks(parent, text) {
  const lines = text.split('\n');
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = FENCE.exec(line);
    if (fence) {
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trimStart().startsWith(fence[1])) body.push(lines[i++]);
      i++;
      const pre = document.createElement('pre');
      const code = document.createElement('code');
      code.textContent = body.join('\n');
      pre.append(code);
      parent.append(pre);
      continue;
    }
    if (line.trim() === '') { i++; continue; }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      const h = document.createElement(`h${Math.min(6, heading[1].length + 2)}`);
      renderInline(h, heading[2]);
      parent.append(h);
      i++;
      continue;
    }
    const item = /^\s*([-*+]|\d+[.)])\s+/;
    if (item.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const list = document.createElement(ordered ? 'ol' : 'ul');
      while (i < lines.length && item.test(lines[i])) {
        const li = document.createElement('li');
        renderInline(li, lines[i].replace(item, ''));
        list.append(li);
        i++;
      }
      parent.append(list);
      continue;
    }
    if (/^\s*>/.test(line)) {
      const quote = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quote.push(lines[i++].replace(/^\s*>\s?/, ''));
      const bq = document.createElement('blockquote');
      renderBlocks(bq, quote.join('\n'));
      parent.append(bq);
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() !== '' && !FENCE.test(lines[i]) && !/^#{1,6}\s/.test(lines[i]) && !item.test(lines[i])) {
      para.push(lines[i++]);
    }
    const p = document.createElement('p');
    para.forEach((l, k) => {
      if (k > 0) p.append(document.createElement('br'));
      renderInline(p, l);
    });
    parent.append(p);
  }
}

/** The end of the last finished block of `text` (0: none): just after the
 *  last blank line that is outside a code fence. */
function finishedUpTo(text) {
  let inFence = false;
  let end = 0;
  let pos = 0;
  let prevBlank = false;
  while (pos <= text.length) {
    const nl = text.indexOf('\n', pos);
    if (nl < 0) break;
    const line = text.slice(pos, nl);
    if (FENCE.test(line)) inFence = !inFence;
    const blank = line.trim() === '';
    if (blank && !inFence && !prevBlank && pos > 0) end = nl + 1;
    prevBlank = blank;
    pos = nl + 1;
  }
  return end;
}

/** A message body that grows by appends. */
export class StreamingMarkdown {
  constructor(container) {
    this.done = document.createElement('div');
    this.tail = document.createElement('div');
    container.append(this.done, this.tail);
    this.text = '';
    this.finished = 0;
    this.pending = false;
  }

  /** Adds text at the end; rendering follows on the next frame. */
  append(text) {
    this.text += text;
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => this.render());
    }
  }

  /** Renders the text received so far (what the next frame would do). */
  render() {
    this.pending = false;
    const rest = this.text.slice(this.finished);
    const cut = finishedUpTo(rest);
    if (cut > 0) {
      renderBlocks(this.done, rest.slice(0, cut));
      this.finished += cut;
    }
    const tail = document.createElement('div');
    renderBlocks(tail, this.text.slice(this.finished));
    this.tail.replaceChildren(...tail.childNodes);
  }
}
