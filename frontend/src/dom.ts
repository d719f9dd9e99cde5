/** Tiny DOM builder. Text children are always inserted as text nodes (never HTML). */

type Attrs = Record<string, string | number | boolean | null | undefined>;
type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'className') el.className = String(value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, ...children);
  return el;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}

export function kbd(key: string): HTMLElement {
  return h('kbd', { 'aria-hidden': 'true' }, key);
}

/** Replay the `changed` highlight on an element whose value just changed. */
export function flash(el: HTMLElement): void {
  el.classList.remove('changed');
  void el.offsetWidth; // force a reflow, or the animation does not restart
  el.classList.add('changed');
}
