/** Keyboard shortcut dispatch for judging pages. */

export interface Shortcut {
  /** Value of KeyboardEvent.key (letters compared case-insensitively). */
  key: string;
  /** Human-readable key label shown in the legend. */
  label: string;
  description: string;
  run: () => void;
  /** Return false to let the key fall through (e.g. option disabled). */
  enabled?: () => boolean;
  /** Only with Alt held (e.g. Alt+ArrowUp); other shortcuts never fire with Alt. */
  alt?: boolean;
  /** Left out of the shortcut legend (an alias listed under another entry). */
  hidden?: boolean;
}

export interface KeyboardOptions {
  shortcuts: Shortcut[];
  /** Ctrl/Cmd+Enter, also from inside text fields. */
  onSubmitChord: () => void;
  /** Escape pressed inside a text field: leave the field. */
  onEscapeField: (field: HTMLElement) => void;
  /** Escape pressed elsewhere (close panels). */
  onEscape?: () => void;
}

function isTextField(el: EventTarget | null): el is HTMLElement {
  if (!(el instanceof HTMLElement)) return false;
  if (el.isContentEditable) return true;
  if (el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement) return true;
  if (el instanceof HTMLInputElement) {
    return !['button', 'submit', 'reset', 'checkbox', 'radio'].includes(el.type);
  }
  return false;
}

/** Elements where Enter/Space have native meaning (activate), so we must not hijack them. */
function isActivatable(el: EventTarget | null): boolean {
  return (
    el instanceof HTMLElement &&
    (el instanceof HTMLButtonElement ||
      el instanceof HTMLAnchorElement ||
      el instanceof HTMLInputElement ||
      el.getAttribute('role') === 'button' ||
      el.tagName === 'SUMMARY')
  );
}

export function installShortcuts(options: KeyboardOptions): () => void {
  const handler = (event: KeyboardEvent): void => {
    if (event.defaultPrevented || event.isComposing) return;
    const target = event.target;

    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey) && !event.altKey) {
      event.preventDefault();
      options.onSubmitChord();
      return;
    }

    if (isTextField(target)) {
      if (event.key === 'Escape') {
        event.preventDefault();
        options.onEscapeField(target);
      }
      return;
    }

    if (event.ctrlKey || event.metaKey) return;
    const alt = event.altKey;

    if (event.key === 'Escape' && !alt) {
      options.onEscape?.();
      return;
    }
    if ((event.key === 'Enter' || event.key === ' ') && isActivatable(target)) return;

    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const shortcut = options.shortcuts.find(
      (s) => Boolean(s.alt) === alt && s.key.toLowerCase() === key.toLowerCase() && (!s.enabled || s.enabled()),
    );
    if (!shortcut) return;
    if (event.repeat && key === 'Enter') return;
    event.preventDefault();
    shortcut.run();
  };
  document.addEventListener('keydown', handler);
  return () => document.removeEventListener('keydown', handler);
}
