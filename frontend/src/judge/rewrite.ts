/** "Edit preferred reply": a rewrite of the chosen response, sent only when it was changed. */
import { h, kbd } from '../dom';
import type { CandidateResponse } from './types';

export interface EditTarget {
  response: CandidateResponse;
  /** e.g. "Response B" */
  label: string;
}

export class RewriteField {
  readonly element: HTMLElement;
  private readonly toggle: HTMLButtonElement;
  private readonly body: HTMLElement;
  private readonly textarea: HTMLTextAreaElement;
  private readonly hint: HTMLElement;
  private readonly resetButton: HTMLButtonElement;
  private target: EditTarget | null = null;
  /** The text the textarea was filled from (the target when it was last filled). */
  private base: CandidateResponse | null = null;
  private enabled = true;

  constructor(private readonly title: string) {
    this.toggle = h(
      'button',
      { type: 'button', className: 'rewrite-toggle', 'aria-expanded': 'false', 'aria-controls': 'judge-rewrite-body', 'data-testid': 'edit-toggle', 'aria-keyshortcuts': 'e' },
      h('span', { className: 'rewrite-caret', 'aria-hidden': 'true' }, '▸'),
      title,
      ' ',
      h('span', { className: 'muted' }, '(optional)'),
      ' ',
      kbd('E'),
    );
    this.toggle.addEventListener('click', () => this.setOpen(this.body.hidden !== false));
    this.textarea = h('textarea', {
      id: 'judge-rewrite',
      name: 'edited_response',
      rows: 8,
      'data-testid': 'edited-response',
      spellcheck: 'true',
    });
    this.textarea.addEventListener('input', () => this.syncHint());
    this.hint = h('p', { className: 'muted small rewrite-hint', id: 'judge-rewrite-hint', 'aria-live': 'polite' });
    this.textarea.setAttribute('aria-describedby', 'judge-rewrite-hint');
    this.resetButton = h('button', { type: 'button', className: 'btn btn-secondary btn-sm', 'data-testid': 'edit-reset' }, 'Reset to original');
    this.resetButton.addEventListener('click', () => {
      this.fill();
      this.textarea.focus();
    });
    this.body = h(
      'div',
      { className: 'rewrite-body', id: 'judge-rewrite-body', hidden: true },
      h('label', { for: 'judge-rewrite', className: 'visually-hidden' }, title),
      this.textarea,
      h('div', { className: 'rewrite-footer' }, this.hint, this.resetButton),
    );
    this.element = h('section', { className: 'rewrite-field', 'data-testid': 'rewrite' }, this.toggle, this.body);
  }

  /** The kind says which response an edit would rewrite (null: none yet, e.g. no winner chosen). */
  setTarget(target: EditTarget | null, reason = ''): void {
    const changed = target?.response.id !== this.target?.response.id;
    this.target = target;
    if (changed && !this.isDirty()) this.fill();
    this.textarea.disabled = !this.enabled || target === null;
    this.resetButton.disabled = !this.enabled || target === null;
    this.syncHint(reason);
  }

  private fill(): void {
    this.base = this.target?.response ?? null;
    this.textarea.value = this.base?.content ?? '';
    this.syncHint();
  }

  private isDirty(): boolean {
    return this.base !== null && this.textarea.value !== this.base.content;
  }

  private syncHint(reason = ''): void {
    if (!this.target) {
      this.hint.textContent = reason || 'Choose a response first; its text appears here to edit.';
    } else if (this.base && this.base.id !== this.target.response.id && this.isDirty()) {
      this.hint.textContent = `Your edit started from another response; it will be saved as a rewrite of ${this.target.label}. Reset to start from ${this.target.label}.`;
    } else if (this.isDirty()) {
      this.hint.textContent = `Edited: your rewrite of ${this.target.label} is saved with the judgment.`;
    } else {
      this.hint.textContent = `Rewriting ${this.target.label}. Unchanged text is not saved.`;
    }
  }

  setOpen(open: boolean): void {
    this.body.hidden = !open;
    this.toggle.setAttribute('aria-expanded', String(open));
    this.element.classList.toggle('is-open', open);
  }

  /** Open the editor and put the cursor in it. */
  focus(): void {
    this.setOpen(true);
    if (!this.textarea.disabled) this.textarea.focus();
    else this.toggle.focus();
  }

  /** The rewrite to send: only when there is a target and the text differs from it. */
  value(): string | undefined {
    if (!this.target) return undefined;
    const text = this.textarea.value;
    if (text.trim() === '' || text.trim() === this.target.response.content.trim()) return undefined;
    return text;
  }

  reset(): void {
    this.target = null;
    this.base = null;
    this.textarea.value = '';
    this.setOpen(false);
    this.setTarget(null);
  }

  setEnabled(enabled: boolean): void {
    this.enabled = enabled;
    this.toggle.disabled = !enabled;
    this.textarea.disabled = !enabled || this.target === null;
    this.resetButton.disabled = !enabled || this.target === null;
  }

  get heading(): string {
    return this.title;
  }
}
