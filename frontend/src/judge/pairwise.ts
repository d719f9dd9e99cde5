/** Pairwise (A vs B) judging app. */
import { ApiClient, ApiError, errorMessage, fillUrl } from '../api';
import { h, kbd } from '../dom';
import { markdownElement } from '../markdown';
import { installShortcuts, type Shortcut } from './keyboard';
import { renderConversation, renderResponses } from './render';
import type {
  Assignment,
  JudgeConfig,
  NextResponse,
  Outcome,
  PairwiseSubmission,
  Progress,
  Strength,
} from './types';

type Choice = 'a' | 'b' | 'tie' | 'both_bad';

/** Values must match annotation.services.serving.SKIP_REASONS on the backend. */
const SKIP_REASONS: { value: string; label: string }[] = [
  { value: 'cant_judge', label: "Can't judge" },
  { value: 'unsafe', label: 'Unsafe content' },
  { value: 'private_data', label: 'Private data' },
  { value: 'broken', label: 'Broken item' },
  { value: 'other', label: 'Other' },
];

const STRENGTHS: { value: Strength; label: string }[] = [
  { value: 1, label: 'Slightly better' },
  { value: 2, label: 'Clearly better' },
  { value: 3, label: 'Much better' },
];

interface ChoiceDef {
  choice: Choice;
  label: string;
  key: string;
  testid: string;
  enabled: boolean;
}

function formatTime(iso: string): string | null {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return null;
  return date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

export class PairwiseJudge {
  private readonly config: JudgeConfig;
  private readonly api: ApiClient;
  private readonly root: HTMLElement;

  private assignment: Assignment | null = null;
  private choice: Choice | null = null;
  private strength: Strength | null = null;
  private renderedAt = 0;
  private heartbeat: number | undefined;
  private expiresEl: HTMLElement | null = null;
  private busy = false;
  private finished = false;
  private firstRender = true;

  // Static shell elements
  private progressText!: HTMLElement;
  private progressBar!: HTMLProgressElement;
  private instructionsToggle!: HTMLButtonElement;
  private instructionsPanel!: HTMLElement;
  private helpToggle!: HTMLButtonElement;
  private helpPanel!: HTMLElement;
  private layout!: HTMLElement;
  private itemEl!: HTMLElement;
  private form!: HTMLFormElement;
  private choiceButtons = new Map<Choice, HTMLButtonElement>();
  private strengthGroup!: HTMLElement;
  private strengthButtons = new Map<Strength, HTMLButtonElement>();
  private rationale!: HTMLTextAreaElement;
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

  // ---------------------------------------------------------------- shell

  private choiceDefs(): ChoiceDef[] {
    const { options } = this.config;
    return [
      { choice: 'a', label: 'A is better', key: 'a', testid: 'choose-a', enabled: true },
      { choice: 'b', label: 'B is better', key: 'b', testid: 'choose-b', enabled: true },
      { choice: 'tie', label: 'Tie', key: 't', testid: 'choose-tie', enabled: options.allowTies },
      { choice: 'both_bad', label: 'Both bad', key: 'x', testid: 'choose-both-bad', enabled: options.allowBothBad },
    ];
  }

  private shortcuts(): Shortcut[] {
    const { options } = this.config;
    const canAnswer = (): boolean => this.assignment !== null && !this.busy;
    const list: Shortcut[] = [];
    for (const def of this.choiceDefs()) {
      if (!def.enabled) continue;
      list.push({
        key: def.key,
        label: def.key.toUpperCase(),
        description: def.label,
        enabled: canAnswer,
        run: () => this.setChoice(def.choice),
      });
    }
    if (options.strength) {
      for (const s of STRENGTHS) {
        list.push({
          key: String(s.value),
          label: String(s.value),
          description: `${s.label} (after choosing A or B)`,
          enabled: canAnswer,
          run: () => this.setStrength(s.value),
        });
      }
    }
    list.push(
      {
        key: 'r',
        label: 'R',
        description: 'Write a rationale',
        enabled: canAnswer,
        run: () => this.rationale.focus(),
      },
      {
        key: 'Enter',
        label: 'Enter',
        description: 'Submit (Ctrl/⌘+Enter from the rationale box)',
        enabled: canAnswer,
        run: () => void this.submit(),
      },
      { key: 's', label: 'S', description: 'Skip this item', enabled: canAnswer, run: () => void this.skip() },
      { key: 'i', label: 'I', description: 'Show / hide instructions', run: () => this.toggleInstructions() },
      { key: '?', label: '?', description: 'Show / hide this shortcut list', run: () => this.toggleHelp() },
    );
    return list;
  }

  private buildShell(): void {
    const { options } = this.config;

    // Toolbar: progress + panel toggles
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
      kbd('i'),
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

    const toolbar = h(
      'div',
      { className: 'judge-toolbar' },
      h('div', { className: 'progress-wrap' }, this.progressText, this.progressBar),
      h('div', { className: 'toolbar-actions' }, this.instructionsToggle, this.helpToggle),
    );

    // Shortcut help
    const rows = this.shortcuts().map((s) =>
      h('div', { className: 'shortcut-row' }, h('dt', {}, h('kbd', {}, s.label)), h('dd', {}, s.description)),
    );
    rows.push(
      h('div', { className: 'shortcut-row' }, h('dt', {}, h('kbd', {}, 'Esc')), h('dd', {}, 'Leave the text box / close panels')),
    );
    this.helpPanel = h(
      'section',
      { className: 'card shortcut-help', id: 'judge-shortcuts', 'data-testid': 'shortcut-help', 'aria-labelledby': 'shortcut-help-heading', hidden: true },
      h('h2', { id: 'shortcut-help-heading', className: 'panel-heading' }, 'Keyboard shortcuts'),
      h('dl', { className: 'shortcut-list' }, ...rows),
      h('p', { className: 'muted small' }, 'Shortcuts are ignored while typing in a text box. Everything is also reachable with Tab and Enter/Space.'),
    );

    // Instructions panel
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

    // Item
    this.itemEl = h('section', { className: 'judge-item', 'data-testid': 'item', 'aria-labelledby': 'item-heading', 'aria-busy': 'true' },
      h('p', { className: 'muted loading' }, 'Loading next item…'));

    // Answer form
    const choiceGroup = h('div', { className: 'choice-buttons', role: 'group', 'aria-labelledby': 'choice-label' });
    for (const def of this.choiceDefs()) {
      if (!def.enabled) continue;
      const button = h(
        'button',
        {
          type: 'button',
          className: `toggle choice-${def.choice}`,
          'aria-pressed': 'false',
          'aria-keyshortcuts': def.key,
          'data-testid': def.testid,
        },
        h('span', { className: 'toggle-label' }, def.label),
        kbd(def.key.toUpperCase()),
      );
      button.addEventListener('click', () => this.setChoice(def.choice));
      this.choiceButtons.set(def.choice, button);
      choiceGroup.append(button);
    }

    const strengthButtons = h('div', { className: 'strength-buttons' });
    for (const s of STRENGTHS) {
      const button = h(
        'button',
        {
          type: 'button',
          className: 'toggle toggle-sm',
          'aria-pressed': 'false',
          'aria-keyshortcuts': String(s.value),
          'data-testid': `strength-${s.value}`,
        },
        h('span', { className: 'toggle-label' }, s.label),
        kbd(String(s.value)),
      );
      button.addEventListener('click', () => this.setStrength(s.value));
      this.strengthButtons.set(s.value, button);
      strengthButtons.append(button);
    }
    this.strengthGroup = h(
      'div',
      { className: 'answer-group strength-group', role: 'group', 'aria-labelledby': 'strength-label', hidden: true },
      h('span', { id: 'strength-label', className: 'group-label' }, 'How much better?'),
      strengthButtons,
    );

    this.rationale = h('textarea', {
      id: 'judge-rationale',
      name: 'rationale',
      rows: 2,
      'data-testid': 'rationale',
      'aria-keyshortcuts': 'r',
      required: options.requireRationale,
      'aria-required': options.requireRationale ? 'true' : null,
      placeholder: options.requireRationale ? 'Why is this the better answer?' : 'Optional: why?',
    });
    const rationaleField = h(
      'div',
      { className: 'field rationale-field' },
      h(
        'label',
        { for: 'judge-rationale' },
        'Rationale ',
        h('span', { className: 'muted' }, options.requireRationale ? '(required)' : '(optional)'),
        ' ',
        kbd('R'),
      ),
      this.rationale,
    );

    this.submitButton = h('button', { type: 'submit', className: 'btn btn-primary', 'data-testid': 'submit', 'aria-keyshortcuts': 'Enter' }, 'Submit ', kbd('Enter'));
    this.skipReason = h('select', { id: 'judge-skip-reason', name: 'skip_reason', 'data-testid': 'skip-reason' },
      h('option', { value: '' }, 'No reason'),
      ...SKIP_REASONS.map((r) => h('option', { value: r.value }, r.label)),
    );
    this.skipButton = h('button', { type: 'button', className: 'btn btn-secondary', 'data-testid': 'skip', 'aria-keyshortcuts': 's' }, 'Skip ', kbd('S'));
    this.skipButton.addEventListener('click', () => void this.skip());

    this.statusEl = h('p', { className: 'judge-status', role: 'status', 'aria-live': 'polite', 'data-testid': 'status' });
    this.errorEl = h('div', { className: 'judge-error', role: 'alert', 'aria-live': 'assertive', 'data-testid': 'error', hidden: true });

    this.form = h(
      'form',
      { className: 'answer-panel', 'aria-labelledby': 'answer-heading', novalidate: true, tabindex: -1 },
      h('h2', { id: 'answer-heading', className: 'visually-hidden' }, 'Your judgement'),
      h('div', { className: 'answer-row' },
        h('div', { className: 'answer-group' }, h('span', { id: 'choice-label', className: 'group-label' }, 'Which response is better?'), choiceGroup),
        this.strengthGroup,
      ),
      rationaleField,
      h('div', { className: 'answer-actions' },
        this.submitButton,
        h('div', { className: 'skip-group' },
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

    this.root.replaceChildren(h('div', { className: 'judge' }, toolbar, this.helpPanel, this.layout));
    this.setControlsEnabled(false);
  }

  // ---------------------------------------------------------------- panels

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

  // ---------------------------------------------------------------- state

  private setChoice(choice: Choice): void {
    if (!this.assignment || this.busy || !this.choiceButtons.has(choice)) return;
    this.choice = choice;
    if (choice !== 'a' && choice !== 'b') this.strength = null;
    this.clearError();
    this.syncAnswer();
  }

  private setStrength(strength: Strength): void {
    if (!this.assignment || this.busy || !this.config.options.strength) return;
    if (this.choice !== 'a' && this.choice !== 'b') {
      this.setStatus('Choose A or B first, then how much better.');
      return;
    }
    this.strength = strength;
    this.clearError();
    this.syncAnswer();
  }

  private syncAnswer(): void {
    for (const [choice, button] of this.choiceButtons) {
      button.setAttribute('aria-pressed', String(this.choice === choice));
    }
    const showStrength = this.config.options.strength && (this.choice === 'a' || this.choice === 'b');
    this.strengthGroup.hidden = !showStrength;
    for (const [value, button] of this.strengthButtons) {
      button.setAttribute('aria-pressed', String(this.strength === value));
    }
    this.root.querySelector('.responses')?.setAttribute('data-choice', this.choice ?? '');
  }

  private resetAnswer(): void {
    this.choice = null;
    this.strength = null;
    this.rationale.value = '';
    this.skipReason.value = '';
    this.syncAnswer();
  }

  private setControlsEnabled(enabled: boolean): void {
    for (const button of [...this.choiceButtons.values(), ...this.strengthButtons.values()]) button.disabled = !enabled;
    this.submitButton.disabled = !enabled;
    this.skipButton.disabled = !enabled;
    this.rationale.disabled = !enabled;
    this.skipReason.disabled = !enabled;
  }

  private setBusy(busy: boolean): void {
    this.busy = busy;
    this.itemEl.setAttribute('aria-busy', String(busy));
    this.submitButton.disabled = busy || !this.assignment;
    this.skipButton.disabled = busy || !this.assignment;
  }

  private setStatus(text: string): void {
    this.statusEl.textContent = text;
  }

  private showError(message: string, retry?: { label: string; run: () => void }): void {
    const children: Node[] = [h('span', { className: 'error-message' }, message)];
    if (retry) {
      const button = h('button', { type: 'button', className: 'btn btn-secondary btn-sm' }, retry.label);
      button.addEventListener('click', retry.run);
      children.push(button);
    }
    this.errorEl.replaceChildren(...children);
    this.errorEl.hidden = false;
  }

  private clearError(): void {
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

  // ---------------------------------------------------------------- network

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
      if (!this.assignment) {
        this.itemEl.replaceChildren(h('p', { className: 'muted' }, 'Could not load an item.'));
      }
      return false;
    } finally {
      this.setBusy(false);
    }
  }

  private validate(): string | null {
    const { options } = this.config;
    if (!this.choice) return 'Choose an answer first: A is better, B is better' + (options.allowTies ? ', Tie' : '') + (options.allowBothBad ? ' or Both bad' : '') + '.';
    if (options.strength && (this.choice === 'a' || this.choice === 'b') && this.strength === null) {
      return 'Choose how much better (1–3).';
    }
    if (options.requireRationale && this.rationale.value.trim() === '') {
      return 'Please write a short rationale.';
    }
    return null;
  }

  private buildSubmission(assignment: Assignment): PairwiseSubmission {
    const [left, right] = assignment.item.responses;
    let outcome: Outcome;
    let preferred: number | null = null;
    switch (this.choice) {
      case 'a':
        outcome = 'preferred';
        preferred = left.id;
        break;
      case 'b':
        outcome = 'preferred';
        preferred = right.id;
        break;
      case 'tie':
        outcome = 'tie';
        break;
      default:
        outcome = 'both_bad';
    }
    return {
      outcome,
      preferred_response_id: preferred,
      strength: outcome === 'preferred' && this.config.options.strength ? this.strength : null,
      rationale: this.rationale.value.trim(),
      time_taken_ms: Math.max(0, Math.round(performance.now() - this.renderedAt)),
    };
  }

  private async submit(): Promise<void> {
    const assignment = this.assignment;
    if (!assignment || this.busy) return;
    const problem = this.validate();
    if (problem) {
      this.showError(problem);
      if (problem.includes('rationale')) this.rationale.focus();
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
    if (await this.loadNext()) this.setStatus('Saved.');
    else this.setStatus('Saved.');
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

  // ---------------------------------------------------------------- render

  private renderAssignment(assignment: Assignment): void {
    this.assignment = assignment;
    this.finished = false;
    this.doneEl.hidden = true;
    this.form.hidden = false;
    this.itemEl.hidden = false;

    this.startHeartbeat(assignment);
    const expires = formatTime(assignment.expires_at);
    const heading = h('h2', { id: 'item-heading', className: 'item-heading', tabindex: -1 }, `Item #${assignment.item.id}`);
    const header = h(
      'div',
      { className: 'item-header' },
      heading,
      (this.expiresEl = expires ? h('span', { className: 'muted small' }, `Reserved for you until ${expires}`) : null),
    );
    this.itemEl.replaceChildren(
      header,
      renderConversation(assignment.item.messages),
      renderResponses(assignment.item.responses),
    );
    this.itemEl.setAttribute('data-item-id', String(assignment.item.id));
    this.itemEl.setAttribute('data-assignment-id', String(assignment.id));

    this.clearError();
    this.setControlsEnabled(true);
    this.resetAnswer();
    this.renderedAt = performance.now();

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
