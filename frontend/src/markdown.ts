/**
 * Safe markdown rendering for untrusted model output.
 *
 * Pipeline: markdown-it (raw HTML disabled, so any HTML in the source is
 * escaped and shown as text) -> highlight.js for fenced code -> DOMPurify as
 * defence in depth. Links always open in a new tab without referrer/opener.
 */
import DOMPurify from 'dompurify';
import MarkdownIt, { type MarkdownIt as MarkdownItInstance } from 'markdown-it';
import hljs from 'highlight.js/lib/core';
import bash from 'highlight.js/lib/languages/bash';
import cpp from 'highlight.js/lib/languages/cpp';
import go from 'highlight.js/lib/languages/go';
import java from 'highlight.js/lib/languages/java';
import javascript from 'highlight.js/lib/languages/javascript';
import json from 'highlight.js/lib/languages/json';
import plaintext from 'highlight.js/lib/languages/plaintext';
import python from 'highlight.js/lib/languages/python';
import rust from 'highlight.js/lib/languages/rust';
import sql from 'highlight.js/lib/languages/sql';
import typescript from 'highlight.js/lib/languages/typescript';

const LANGUAGES = { bash, cpp, go, java, javascript, json, plaintext, python, rust, sql, typescript };
for (const [name, lang] of Object.entries(LANGUAGES)) {
  hljs.registerLanguage(name, lang);
}
hljs.registerAliases(['sh', 'shell', 'zsh', 'console'], { languageName: 'bash' });
hljs.registerAliases(['text', 'txt'], { languageName: 'plaintext' });

const LINK_REL = 'noopener noreferrer nofollow';

const md: MarkdownItInstance = new MarkdownIt({
  html: false,
  linkify: true,
  typographer: false,
  breaks: false,
  highlight(code: string, lang: string): string {
    const name = (lang || '').trim().toLowerCase();
    const known = name !== '' && hljs.getLanguage(name) !== undefined;
    const body = known
      ? hljs.highlight(code, { language: name, ignoreIllegals: true }).value
      : md.utils.escapeHtml(code);
    const cls = known ? ` class="hljs language-${md.utils.escapeHtml(name)}"` : ' class="hljs"';
    return `<pre class="code-block"><code${cls}>${body}</code></pre>`;
  },
});

// Images in model output would trigger requests to arbitrary hosts; show
// them as plain links instead.
md.renderer.rules.image = (tokens, idx) => {
  const token = tokens[idx];
  const src = String(token.attrGet('src') ?? '');
  const alt = md.utils.escapeHtml(token.content || 'image');
  return `<a href="${md.utils.escapeHtml(src)}" class="md-image-link">[image: ${alt}]</a>`;
};

// One private DOMPurify instance so our hook does not leak into other users.
const purifier = DOMPurify(window);
purifier.addHook('afterSanitizeAttributes', (node) => {
  if (node instanceof Element && node.tagName === 'A') {
    if (node.hasAttribute('href')) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', LINK_REL);
    }
  }
});

const PURIFY_CONFIG = {
  ADD_ATTR: ['target'],
  FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'option', 'iframe', 'object', 'embed'],
  FORBID_ATTR: ['style'],
  ALLOW_DATA_ATTR: false,
};

/** Render untrusted markdown to sanitized HTML. */
export function renderMarkdown(source: string): string {
  const html = md.render(source ?? '');
  return purifier.sanitize(html, PURIFY_CONFIG) as string;
}

/** Create an element whose content is the sanitized markdown rendering. */
export function markdownElement(source: string, tag: keyof HTMLElementTagNameMap = 'div'): HTMLElement {
  const el = document.createElement(tag);
  el.className = 'md';
  el.innerHTML = renderMarkdown(source);
  return el;
}
