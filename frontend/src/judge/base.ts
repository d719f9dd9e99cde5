/**
 * The judging page shell shared by every kind: toolbar, shortcut legend,
 * instructions, item loading, rationale, rewrite, flags, skip, submit, lease
 * heartbeat and the "all done" state. A kind (pairwise.ts, ranking.ts,
 * rating.ts) supplies its answer controls, shortcuts, rendering of the
 * responses, validation and the kind-specific part of the submission.
 */
import { ApiClient, ApiError, errorMessage, fillUrl } from '../api';
import { h, kbd } from '../dom';
import { markdownElement } from '../markdown';
import { FlagsField, skipReasons } from './flags';
import { installShortcuts, type Shortcut } from './keyboard';
import { renderConversation } from './render';
import { RewriteField, type EditTarget } from './rewrite';
import type { Assignment, CommonSubmission, JudgeConfig, NextResponse, Progress } from './types';

function formatTime(iso: string): string | null {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return null;
  return date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/** A problem that stops a submit: what to say, and where to put the focus. */
export interface Problem {
  message: string;
  focus?: HTMLElement | null;
}

const WIDE_KEY = 'arbiter.judge.wide';

function stored(key: string): string | null {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null;
  }
}

export function store(key: string, value: string): void {
  try {
    window.localStorage.setItem(key, value);
  } catch {
    /* private mode: the preference just does not stick */
  }
}

export function storedFlag(key: string, fallback: boolean): boolean {
  const value = stored(key);
  return value === null ? fallback : value === '1';
}

/** A toolbar toggle button (aria-pressed) with its key shown. */
export function toolbarToggle(label: string, key: string, testid: string, pressed: boolean): HTMLButtonElement {
  return h(
    'button',
    {
      type: 'button',
      className: 'btn btn-secondary btn-sm toolbar-toggle',
      'aria-pressed': String(pressed),
      'aria-keyshortcuts': key,
      'data-testid': testid,
    },
    label,
    ' ',
    kbd(key.toUpperCase()),
  );
}

export abstract class BaseJudge {
  protected readonly config: JudgeConfig;
  protected readonly api: ApiClient;
  protected readonly root: HTMLElement;

  protected assignment: Assignment | null = null;
  protected busy = false;
  private renderedAt = 0;
  private heartbeat: number | undefined;
  private expiresEl: HTMLElement | null = null;
  private finished = false;
  private firstRender = true;

  private progressText!: HTMLElement;
  private progressBar!: HTMLProgressElement;
  private instructionsToggle!: HTMLButtonElement;
  private instructionsPanel!: HTMLElement;
  private helpToggle!: HTMLButtonElement;
  private helpPanel!: HTMLElement;
  private wideToggle!: HTMLButtonElement;
  private layout!: HTMLElement;
  protected itemEl!: HTMLElement;
  protected form!: HTMLFormElement;
  protected rationale!: HTMLTextAreaElement;
  protected rewrite: RewriteField | null = null;
  protected flags: FlagsField | null = null;
  private submitButton!: HTMLButtonElement;
  private skipButton!: HTMLButtonElement;
  private skipReason!: HTMLSelectElement;
  private statusEl!: HTMLElement;
  private errorEl!: HTMLElement;
  private doneEl!: HTMLElement;

  constructor(root: HTMLElement, config: JudgeConfig) {
    this.root = root;
    this.config = config;
    this.api = new ApiClient({ csrfToken: config.csrfToken });
  }

  // ------------------------------------------------------------ the kind's part

  /** The answer controls at the top of the form (may be empty for kinds that answer on the cards). */
  protected abstract buildControls(): HTMLElement | null;
  /** Kind-specific shortcuts, listed first in the legend. */
  protected abstract kindShortcuts(): Shortcut[];
  /** The candidate responses of a new assignment, with the kind's controls on them. */
  protected abstract renderResponses(assignment: Assignment): HTMLElement;
  /** Clear the answer for a freshly shown assignment. */
  protected abstract resetAnswer(): void;
  protected abstract validate(): Problem | null;
  protected abstract kindSubmission(assignment: Assignment): Record<string, unknown>;
  protected abstract setKindEnabled(enabled: boolean): void;
  /** Which response an edit rewrites now, or null with a reason. */
  protected abstract editTarget(): EditTarget | null;

  /** Extra toolbar buttons (view toggles). */
  protected toolbarButtons(): HTMLElement[] {
    return [];
  }
  protected rewriteTitle(): string {
    return 'Edit preferred reply';
  }
  protected editUnavailableReason(): string {
    return '';
  }
  protected rationalePlaceholder(): string {
    return this.config.options.requireRationale ? 'Why? (required)' : 'Optional: why?';
  }
  protected rationaleLabel(): string {
    return 'Rationale';
  }
  /** Called after a new assignment's DOM is in the page. */
  protected afterRender(): void {}

  // ------------------------------------------------------------ start

  start(): void {
    this.buildShell();
    installShortcuts({
      shortcuts: this.shortcuts(),
      onSubmitChord: () => void this.submit(),
      onEscapeField: (field) => {
        field.blur();
        this.form.focus({ preventScroll: true });
      },
      onEscape: () => {
        if (!this.helpPanel.hidden) this.toggleHelp(false);
        else if (!this.instructionsPanel.hidden) this.toggleInstructions(false);
      },
    });
    void this.loadNext();
  }

  protected canAnswer = (): boolean => this.assignment !== null && !this.busy;

  private shortcuts(): Shortcut[] {
    const list: Shortcut[] = [...this.kindShortcuts()];
    list.push({
      key: 'r',
      label: 'R',
      description: `${this.rationaleLabel()}: write in the text box`,
      enabled: this.canAnswer,
      run: () => this.rationale.focus(),
    });
    if (this.rewrite) {
      const rewrite = this.rewrite;
      list.push({ key: 'e', label: 'E', description: this.rewriteTitle(), enabled: this.canAnswer, run: () => rewrite.focus() });
    }
    if (this.flags) {
      const flags = this.flags;
      list.push({ key: 'f', label: 'F', description: 'Flag the item (Space ticks a box)', enabled: this.canAnswer, run: () => flags.focus() });
    }
    list.push(
      {
        key: 'Enter',
        label: 'Enter',
        description: 'Submit (Ctrl/⌘+Enter from a text box)',
        enabled: this.canAnswer,
        run: () => void this.submit(),
      },
      { key: 's', label: 'S', description: 'Skip this item (with the reason chosen beside Skip)', enabled: this.canAnswer, run: () => void this.skip() },
      { key: 'i', label: 'I', description: 'Show / hide instructions', run: () => this.toggleInstructions() },
      { key: 'w', label: 'W', description: 'Full-width layout on / off', run: () => this.toggleWide() },
      { key: '?', label: '?', description: 'Show / hide this shortcut list', run: () => this.toggleHelp() },
    );
    return list;
  }

  // ------------------------------------------------------------ shell

  private buildShell(): void {
    const { options } = this.config;
    if (options.allowEditing) this.rewrite = new RewriteField(this.rewriteTitle());
    if (this.config.flagReasons && this.config.flagReasons.length > 0) this.flags = new FlagsField(this.config.flagReasons);

    this.progressText = h('span', { className: 'progress-text', 'data-testid': 'progress' }, '…');
    this.progressBar = h('progress', { className: 'progress-bar', max: 1, value: 0, 'aria-hidden': 'true' });
    this.instructionsToggle = h(
      'button',
      {
        type: 'button',
        className: 'btn btn-secondary btn-sm',
        'aria-expanded': 'false',
        'aria-controls': 'judge-instructions',
        'aria-keyshortcuts': 'i',
        'data-testid': 'toggle-instructions',
      },
      'Instructions ',
      kbd('I'),
    );
    this.instructionsToggle.addEventListener('click', () => this.toggleInstructions());
    this.helpToggle = h(
      'button',
      {
        type: 'button',
        className: 'btn btn-secondary btn-sm',
        'aria-expanded': 'false',
        'aria-controls': 'judge-shortcuts',
        'aria-keyshortcuts': '?',
        'data-testid': 'toggle-shortcuts',
      },
      'Shortcuts ',
      kbd('?'),
    );
    this.helpToggle.addEventListener('click', () => this.toggleHelp());
    this.wideToggle = toolbarToggle('Full width', 'w', 'toggle-wide', false);
    this.wideToggle.addEventListener('click', () => this.toggleWide());

    const toolbar = h(
      'div',
      { className: 'judge-toolbar' },
      h('div', { className: 'progress-wrap' }, this.progressText, this.progressBar),
      h(
        'div',
        { className: 'toolbar-actions', role: 'toolbar', 'aria-label': 'View' },
        ...this.toolbarButtons(),
        this.wideToggle,
        this.instructionsToggle,
        this.helpToggle,
      ),
    );

    const rows = this.shortcuts()
      .filter((s) => !s.hidden)
      .map((s) => h('div', { className: 'shortcut-row' }, h('dt', {}, h('kbd', {}, s.label)), h('dd', {}, s.description)));
    rows.push(
      h('div', { className: 'shortcut-row' }, h('dt', {}, h('kbd', {}, 'Tab')), h('dd', {}, 'Move between controls')),
      h('div', { className: 'shortcut-row' }, h('dt', {}, h('kbd', {}, 'Esc')), h('dd', {}, 'Leave the text box / close panels')),
    );
    this.helpPanel = h(
      'section',
      { className: 'card shortcut-help', id: 'judge-shortcuts', 'data-testid': 'shortcut-help', 'aria-labelledby': 'shortcut-help-heading', hidden: true },
      h('h2', { id: 'shortcut-help-heading', className: 'panel-heading' }, 'Keyboard shortcuts'),
      h('dl', { className: 'shortcut-list' }, ...rows),
      h('p', { className: 'muted small' }, 'Shortcuts are ignored while typing in a text box. Everything is also reachable with Tab and Enter/Space.'),
    );

    const closeInstructions = h('button', { type: 'button', className: 'btn-icon', 'aria-label': 'Close instructions' }, '×');
    closeInstructions.addEventListener('click', () => this.toggleInstructions(false));
    const instructionsBody = this.config.instructions.trim()
      ? markdownElement(this.config.instructions)
      : h('p', { className: 'muted' }, 'No instructions for this campaign.');
    this.instructionsPanel = h(
      'aside',
      { className: 'card instructions-panel', id: 'judge-instructions', 'data-testid': 'instructions', 'aria-labelledby': 'instructions-heading', hidden: true },
      h('div', { className: 'panel-header' }, h('h2', { id: 'instructions-heading', className: 'panel-heading' }, 'Instructions'), closeInstructions),
      instructionsBody,
    );

    this.itemEl = h(
      'section',
      { className: `judge-item kind-${this.config.kind}`, 'data-testid': 'item', 'aria-labelledby': 'item-heading', 'aria-busy': 'true' },
      h('p', { className: 'muted loading' }, 'Loading next item…'),
    );

    this.rationale = h('textarea', {
      id: 'judge-rationale',
      name: 'rationale',
      rows: 2,
      'data-testid': 'rationale',
      'aria-keyshortcuts': 'r',
      required: options.requireRationale,
      'aria-required': options.requireRationale ? 'true' : null,
      placeholder: this.rationalePlaceholder(),
    });
    const rationaleField = h(
      'div',
      { className: 'field rationale-field' },
      h(
        'label',
        { for: 'judge-rationale' },
        `${this.rationaleLabel()} `,
        h('span', { className: 'muted' }, options.requireRationale ? '(required)' : '(optional)'),
        ' ',
        kbd('R'),
      ),
      this.rationale,
    );

    this.submitButton = h('button', { type: 'submit', className: 'btn btn-primary', 'data-testid': 'submit', 'aria-keyshortcuts': 'Enter' }, 'Submit ', kbd('Enter'));
    this.skipReason = h(
      'select',
      { id: 'judge-skip-reason', name: 'skip_reason', 'data-testid': 'skip-reason' },
      h('option', { value: '' }, 'Skip: no reason'),
      ...skipReasons(this.config.flagReasons).map((r) => h('option', { value: r.value }, r.label)),
    );
    this.skipButton = h('button', { type: 'button', className: 'btn btn-secondary', 'data-testid': 'skip', 'aria-keyshortcuts': 's' }, 'Skip ', kbd('S'));
    this.skipButton.addEventListener('click', () => void this.skip());

    this.statusEl = h('p', { className: 'judge-status', role: 'status', 'aria-live': 'polite', 'data-testid': 'status' });
    this.errorEl = h('div', { className: 'judge-error', role: 'alert', 'aria-live': 'assertive', 'data-testid': 'error', hidden: true });

    const extras = h('div', { className: 'answer-extras' }, rationaleField, this.flags?.element ?? null);
    this.form = h(
      'form',
      { className: 'answer-panel', 'aria-labelledby': 'answer-heading', novalidate: true, tabindex: -1 },
      h('h2', { id: 'answer-heading', className: 'visually-hidden' }, 'Your judgement'),
      this.buildControls(),
      extras,
      this.rewrite?.element ?? null,
      h(
        'div',
        { className: 'answer-actions' },
        this.submitButton,
        h(
          'div',
          { className: 'skip-group' },
          h('label', { for: 'judge-skip-reason', className: 'visually-hidden' }, 'Skip reason (optional)'),
          this.skipReason,
          this.skipButton,
        ),
      ),
    );
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.submit();
    });

    const feedback = h('div', { className: 'judge-feedback' }, this.errorEl, this.statusEl);
    const dock = h('div', { className: 'answer-dock' }, this.form, feedback);
    this.doneEl = h('section', { className: 'card done-state', 'data-testid': 'done', 'aria-labelledby': 'done-heading', hidden: true });

    const main = h('div', { className: 'judge-main' }, this.itemEl, this.doneEl, dock);
    this.layout = h('div', { className: 'judge-layout' }, main, this.instructionsPanel);
    this.root.replaceChildren(h('div', { className: `judge judge-${this.config.kind}` }, toolbar, this.helpPanel, this.layout));
    this.setWide(storedFlag(WIDE_KEY, false));
    this.setControlsEnabled(false);
  }

  // ------------------------------------------------------------ panels

  private toggleInstructions(force?: boolean): void {
    const open = force ?? this.instructionsPanel.hidden !== false;
    this.instructionsPanel.hidden = !open;
    this.instructionsToggle.setAttribute('aria-expanded', String(open));
    this.layout.classList.toggle('has-panel', open);
  }

  private toggleHelp(force?: boolean): void {
    const open = force ?? this.helpPanel.hidden !== false;
    this.helpPanel.hidden = !open;
    this.helpToggle.setAttribute('aria-expanded', String(open));
  }

  private toggleWide(): void {
    this.setWide(this.wideToggle.getAttribute('aria-pressed') !== 'true');
  }

  private setWide(wide: boolean): void {
    this.wideToggle.setAttribute('aria-pressed', String(wide));
    this.root.closest('.container')?.classList.toggle('container-full', wide);
    store(WIDE_KEY, wide ? '1' : '0');
  }

  // ------------------------------------------------------------ state helpers

  /** The kind changed the answer: clear a stale error and re-point the rewrite. */
  protected answerChanged(): void {
    this.clearError();
    this.refreshEditTarget();
  }

  protected refreshEditTarget(): void {
    if (!this.rewrite) return;
    const target = this.assignment ? this.editTarget() : null;
    this.rewrite.setTarget(target, target ? '' : this.editUnavailableReason());
  }

  private setControlsEnabled(enabled: boolean): void {
    this.setKindEnabled(enabled);
    this.submitButton.disabled = !enabled;
    this.skipButton.disabled = !enabled;
    this.rationale.disabled = !enabled;
    this.skipReason.disabled = !enabled;
    this.flags?.setEnabled(enabled);
    this.rewrite?.setEnabled(enabled);
  }

  private setBusy(busy: boolean): void {
    this.busy = busy;
    this.itemEl.setAttribute('aria-busy', String(busy));
    this.submitButton.disabled = busy || !this.assignment;
    this.skipButton.disabled = busy || !this.assignment;
  }

  /** Put the focus on Submit (Enter then submits natively). */
  protected focusSubmit(): void {
    this.submitButton.focus();
  }

  protected setStatus(text: string): void {
    this.statusEl.textContent = text;
  }

  protected showError(message: string, retry?: { label: string; run: () => void }): void {
    const children: Node[] = [h('span', { className: 'error-message' }, message)];
    if (retry) {
      const button = h('button', { type: 'button', className: 'btn btn-secondary btn-sm' }, retry.label);
      button.addEventListener('click', retry.run);
      children.push(button);
    }
    this.errorEl.replaceChildren(...children);
    this.errorEl.hidden = false;
  }

  protected clearError(): void {
    this.errorEl.hidden = true;
    this.errorEl.replaceChildren();
  }

  private updateProgress(progress: Progress): void {
    const done = Math.max(0, progress.done | 0);
    const total = Math.max(0, progress.total | 0);
    this.progressText.textContent = `${done} of ${total} judged`;
    this.progressBar.max = Math.max(total, 1);
    this.progressBar.value = Math.min(done, Math.max(total, 1));
  }

  // ------------------------------------------------------------ network

  private async loadNext(): Promise<boolean> {
    this.setBusy(true);
    try {
      const data = await this.api.post<NextResponse>(this.config.nextUrl, {});
      this.updateProgress(data.progress);
      if (data.assignment) this.renderAssignment(data.assignment);
      else this.renderDone(data.progress);
      return true;
    } catch (err) {
      this.showError(errorMessage(err), { label: 'Try again', run: () => { this.clearError(); void this.loadNext(); } });
      if (!this.assignment) this.itemEl.replaceChildren(h('p', { className: 'muted' }, 'Could not load an item.'));
      return false;
    } finally {
      this.setBusy(false);
    }
  }

  private buildSubmission(assignment: Assignment): Record<string, unknown> {
    const common: CommonSubmission = {
      rationale: this.rationale.value.trim(),
      time_taken_ms: Math.max(0, Math.round(performance.now() - this.renderedAt)),
    };
    if (this.flags) common.flags = this.flags.values();
    const edited = this.rewrite?.value();
    if (edited !== undefined) common.edited_response = edited;
    return { ...this.kindSubmission(assignment), ...common };
  }

  protected async submit(): Promise<void> {
    const assignment = this.assignment;
    if (!assignment || this.busy) return;
    let problem = this.validate();
    if (!problem && this.config.options.requireRationale && this.rationale.value.trim() === '') {
      problem = { message: 'Please write a short rationale.', focus: this.rationale };
    }
    if (problem) {
      this.showError(problem.message);
      problem.focus?.focus();
      return;
    }
    this.clearError();
    this.setStatus('Saving…');
    this.setBusy(true);
    try {
      await this.api.post(fillUrl(this.config.submitUrlTemplate, assignment.id), this.buildSubmission(assignment));
    } catch (err) {
      this.setBusy(false);
      this.setStatus('');
      this.showSubmitError(err);
      return;
    }
    this.setStatus('Saved. Loading next item…');
    await this.loadNext();
    this.setStatus('Saved.');
  }

  private async skip(): Promise<void> {
    const assignment = this.assignment;
    if (!assignment || this.busy) return;
    this.clearError();
    this.setStatus('Skipping…');
    this.setBusy(true);
    try {
      await this.api.post(fillUrl(this.config.skipUrlTemplate, assignment.id), { reason: this.skipReason.value });
    } catch (err) {
      this.setBusy(false);
      this.setStatus('');
      this.showSubmitError(err);
      return;
    }
    this.setStatus('Skipped. Loading next item…');
    await this.loadNext();
    this.setStatus('Skipped.');
  }

  private showSubmitError(err: unknown): void {
    const gone = err instanceof ApiError && (err.status === 404 || err.status === 409);
    this.showError(
      errorMessage(err),
      gone ? { label: 'Load next item', run: () => { this.clearError(); void this.loadNext(); } } : undefined,
    );
  }

  // ------------------------------------------------------------ render

  private renderAssignment(assignment: Assignment): void {
    this.assignment = assignment;
    this.finished = false;
    this.doneEl.hidden = true;
    this.form.hidden = false;
    this.itemEl.hidden = false;

    this.startHeartbeat(assignment);
    const expires = formatTime(assignment.expires_at);
    const heading = h('h2', { id: 'item-heading', className: 'item-heading', tabindex: -1 }, `Item #${assignment.item.id}`);
    this.expiresEl = expires ? h('span', { className: 'muted small' }, `Reserved for you until ${expires}`) : null;
    this.itemEl.replaceChildren(
      h('div', { className: 'item-header' }, heading, this.expiresEl),
      renderConversation(assignment.item.messages),
      this.renderResponses(assignment),
    );
    this.itemEl.setAttribute('data-item-id', String(assignment.item.id));
    this.itemEl.setAttribute('data-assignment-id', String(assignment.id));

    this.clearError();
    this.setControlsEnabled(true);
    this.rationale.value = '';
    this.skipReason.value = '';
    this.flags?.reset();
    this.rewrite?.reset();
    this.resetAnswer();
    this.refreshEditTarget();
    this.renderedAt = performance.now();
    this.afterRender();

    // Move focus to the new item (not on first load: leave the page's natural focus alone).
    if (!this.firstRender) {
      window.scrollTo({ top: 0 });
      heading.focus({ preventScroll: true });
    }
    this.firstRender = false;
  }

  /** Keep the lease while the page is open and visible; a lapsed lease is said at once. */
  private startHeartbeat(assignment: Assignment): void {
    this.stopHeartbeat();
    const every = Math.max(10, Math.floor((this.config.leaseSeconds || 600) / 3)) * 1000;
    this.heartbeat = window.setInterval(() => {
      if (document.visibilityState !== 'visible' || this.assignment?.id !== assignment.id || this.busy) return;
      this.api
        .post<{ expires_at: string }>(fillUrl(this.config.heartbeatUrlTemplate, assignment.id), {})
        .then((data) => {
          const until = formatTime(data.expires_at);
          if (until && this.expiresEl && this.assignment?.id === assignment.id) {
            this.expiresEl.textContent = `Reserved for you until ${until}`;
          }
        })
        .catch((err: unknown) => {
          if (err instanceof ApiError && err.status === 409 && this.assignment?.id === assignment.id) {
            this.stopHeartbeat();
            this.showError(err.message, { label: 'Load next item', run: () => { this.clearError(); void this.loadNext(); } });
          }
        });
    }, every);
  }

  private stopHeartbeat(): void {
    if (this.heartbeat !== undefined) window.clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  private renderDone(progress: Progress): void {
    this.stopHeartbeat();
    this.assignment = null;
    this.finished = true;
    this.itemEl.hidden = true;
    this.itemEl.replaceChildren();
    this.form.hidden = true;
    this.setControlsEnabled(false);
    const heading = h('h2', { id: 'done-heading', tabindex: -1 }, 'All done — nothing left to judge in this campaign');
    this.doneEl.replaceChildren(
      h('div', { className: 'done-icon', 'aria-hidden': 'true' }, '✓'),
      heading,
      h('p', { className: 'muted' }, `${progress.done} of ${progress.total} judged. Thank you!`),
      h('p', {}, h('a', { className: 'btn btn-secondary', href: '/' }, 'Back to home')),
    );
    this.doneEl.hidden = false;
    if (!this.firstRender) {
      window.scrollTo({ top: 0 });
      heading.focus({ preventScroll: true });
    }
    this.firstRender = false;
  }

  get isFinished(): boolean {
    return this.finished;
  }
}
