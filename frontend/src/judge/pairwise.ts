/** Pairwise (A vs B) judging: an overall winner, optional strength, optional winner per criterion, diff view. */
import { diffSides, type DiffPart } from '../diff';
import { h, kbd } from '../dom';
import { BaseJudge, store, storedFlag, toolbarToggle, type Problem } from './base';
import type { Shortcut } from './keyboard';
import { positionLetter, renderResponse } from './render';
import type { EditTarget } from './rewrite';
import type { Assignment, Criterion, Outcome, PairwiseSubmission, ResponseId, Strength } from './types';

type Choice = 'a' | 'b' | 'tie' | 'both_bad';
/** A criterion's winner: a side, or a tie. */
type Side = 'a' | 'b' | 'tie';

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

const SYNC_KEY = 'arbiter.judge.syncScroll';

/** Render diff parts as text with <del>/<ins> around the changed words. */
function diffElement(parts: DiffPart[], side: 'left' | 'right'): HTMLElement {
  const el = h('div', { className: 'diff-view', 'data-testid': `diff-${side}` });
  for (const part of parts) {
    if (part.op === 'equal' || part.text.trim() === '') el.append(part.text);
    else el.append(h(part.op === 'delete' ? 'del' : 'ins', { className: `diff-${part.op}` }, part.text));
  }
  return el;
}

export class PairwiseJudge extends BaseJudge {
  private choice: Choice | null = null;
  private strength: Strength | null = null;
  private winners = new Map<string, Side>();

  private choiceButtons = new Map<Choice, HTMLButtonElement>();
  private strengthGroup!: HTMLElement;
  private strengthButtons = new Map<Strength, HTMLButtonElement>();
  private criterionSets = new Map<string, HTMLFieldSetElement>();
  private responsesEl: HTMLElement | null = null;
  private diffOn = false;
  private syncOn = storedFlag(SYNC_KEY, true);
  private diffToggle!: HTMLButtonElement;
  private syncToggle!: HTMLButtonElement;

  private get criteria(): Criterion[] {
    return this.config.criteria;
  }

  private choiceDefs(): ChoiceDef[] {
    const { options } = this.config;
    return [
      { choice: 'a', label: 'A is better', key: 'a', testid: 'choose-a', enabled: true },
      { choice: 'b', label: 'B is better', key: 'b', testid: 'choose-b', enabled: true },
      { choice: 'tie', label: 'Tie', key: 't', testid: 'choose-tie', enabled: options.allowTies },
      { choice: 'both_bad', label: 'Both bad', key: 'x', testid: 'choose-both-bad', enabled: options.allowBothBad },
    ];
  }

  private sides(): { side: Side; label: string; key: string }[] {
    const list: { side: Side; label: string; key: string }[] = [
      { side: 'a', label: 'A', key: 'a' },
      { side: 'b', label: 'B', key: 'b' },
    ];
    if (this.config.options.allowTies) list.push({ side: 'tie', label: 'Tie', key: 't' });
    return list;
  }

  /** The criterion whose row holds the focus, if any. */
  private focusedCriterion(): string | null {
    const set = document.activeElement?.closest<HTMLElement>('[data-criterion]');
    return set?.dataset.criterion ?? null;
  }

  protected kindShortcuts(): Shortcut[] {
    const { options } = this.config;
    const list: Shortcut[] = [];
    if (this.criteria.length > 0) {
      // Inside a criterion row, A / B / T answer that row (listed once, before the overall keys).
      for (const { side, label, key } of this.sides()) {
        list.push({
          key,
          label: key.toUpperCase(),
          description: `In a criterion row: ${side === 'tie' ? 'tie' : `${label} wins`} on that criterion`,
          enabled: () => this.canAnswer() && this.focusedCriterion() !== null,
          run: () => this.setWinner(this.focusedCriterion()!, side, true),
        });
      }
      list.push({
        key: 'c',
        label: 'C',
        description: 'Go to the next unanswered criterion',
        enabled: this.canAnswer,
        run: () => this.focusCriterion(this.criteria.find((c) => !this.winners.has(c.name))?.name ?? this.criteria[0].name),
      });
    }
    for (const def of this.choiceDefs()) {
      if (!def.enabled) continue;
      list.push({
        key: def.key,
        label: def.key.toUpperCase(),
        description: this.criteria.length > 0 ? `Overall: ${def.label}` : def.label,
        enabled: this.canAnswer,
        run: () => this.setChoice(def.choice),
      });
    }
    if (options.strength) {
      for (const s of STRENGTHS) {
        list.push({
          key: String(s.value),
          label: String(s.value),
          description: `${s.label} (after choosing A or B)`,
          enabled: this.canAnswer,
          run: () => this.setStrength(s.value),
        });
      }
    }
    list.push(
      { key: 'v', label: 'V', description: 'Diff view: highlight the words that differ', run: () => this.setDiff(!this.diffOn) },
      { key: 'l', label: 'L', description: 'Link the scrolling of the two responses on / off', run: () => this.setSync(!this.syncOn) },
    );
    return list;
  }

  protected toolbarButtons(): HTMLElement[] {
    this.diffToggle = toolbarToggle('Diff', 'v', 'toggle-diff', false);
    this.diffToggle.addEventListener('click', () => this.setDiff(!this.diffOn));
    this.syncToggle = toolbarToggle('Linked scroll', 'l', 'toggle-sync', this.syncOn);
    this.syncToggle.addEventListener('click', () => this.setSync(!this.syncOn));
    return [this.diffToggle, this.syncToggle];
  }

  // ------------------------------------------------------------ controls

  protected buildControls(): HTMLElement {
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

    const overallLabel = this.criteria.length > 0 ? 'Overall, which response is better?' : 'Which response is better?';
    return h(
      'div',
      { className: 'pairwise-controls' },
      this.criteria.length > 0 ? this.buildCriteria() : null,
      h(
        'div',
        { className: 'answer-row' },
        h('div', { className: 'answer-group' }, h('span', { id: 'choice-label', className: 'group-label' }, overallLabel), choiceGroup),
        this.strengthGroup,
      ),
    );
  }

  private buildCriteria(): HTMLElement {
    const rows = this.criteria.map((criterion) => {
      const radios = this.sides().map(({ side, label }) => {
        const id = `criterion-${criterion.name}-${side}`;
        const input = h('input', { type: 'radio', id, name: `criterion-${criterion.name}`, value: side, 'data-testid': id });
        input.addEventListener('change', () => this.setWinner(criterion.name, side, false));
        const text = side === 'tie' ? 'Tie' : `${label} better`;
        return h('label', { className: `seg seg-${side}`, for: id }, input, h('span', {}, text));
      });
      const set = h(
        'fieldset',
        { className: 'criterion-row', 'data-criterion': criterion.name, 'data-testid': `criterion-${criterion.name}` },
        h(
          'legend',
          { className: 'criterion-legend' },
          h('span', { className: 'criterion-name' }, criterion.label),
          criterion.description ? h('span', { className: 'criterion-desc muted small' }, criterion.description) : null,
        ),
        h('div', { className: 'seg-group' }, ...radios),
      );
      this.criterionSets.set(criterion.name, set);
      return set;
    });
    return h(
      'div',
      { className: 'criteria-block', 'data-testid': 'criteria' },
      h(
        'p',
        { className: 'group-label criteria-heading' },
        'Which is better on each criterion? ',
        h('span', { className: 'muted small' }, 'Tab to a row, then A / B', this.config.options.allowTies ? ' / T' : '', '; C jumps to the next unanswered row'),
      ),
      h('div', { className: 'criteria-rows' }, ...rows),
    );
  }

  protected setKindEnabled(enabled: boolean): void {
    for (const button of [...this.choiceButtons.values(), ...this.strengthButtons.values()]) button.disabled = !enabled;
    for (const set of this.criterionSets.values()) set.disabled = !enabled;
  }

  // ------------------------------------------------------------ state

  private setChoice(choice: Choice): void {
    if (!this.assignment || this.busy || !this.choiceButtons.has(choice)) return;
    this.choice = choice;
    if (choice !== 'a' && choice !== 'b') this.strength = null;
    this.answerChanged();
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

  private setWinner(name: string, side: Side, fromKey: boolean): void {
    if (!this.assignment || this.busy) return;
    this.winners.set(name, side);
    const set = this.criterionSets.get(name);
    const input = set?.querySelector<HTMLInputElement>(`input[value="${side}"]`);
    if (input) input.checked = true;
    this.clearError();
    if (fromKey) {
      // Go on to the next row; after the last one, to the overall choice.
      const index = this.criteria.findIndex((c) => c.name === name);
      const next = this.criteria[index + 1];
      if (next) this.focusCriterion(next.name);
      else this.form.focus({ preventScroll: true });
    }
  }

  private focusCriterion(name: string): void {
    const set = this.criterionSets.get(name);
    if (!set) return;
    const input = set.querySelector<HTMLInputElement>('input:checked') ?? set.querySelector<HTMLInputElement>('input');
    input?.focus();
  }

  private syncAnswer(): void {
    for (const [choice, button] of this.choiceButtons) button.setAttribute('aria-pressed', String(this.choice === choice));
    const showStrength = this.config.options.strength && (this.choice === 'a' || this.choice === 'b');
    this.strengthGroup.hidden = !showStrength;
    for (const [value, button] of this.strengthButtons) button.setAttribute('aria-pressed', String(this.strength === value));
    this.responsesEl?.setAttribute('data-choice', this.choice ?? '');
  }

  protected resetAnswer(): void {
    this.choice = null;
    this.strength = null;
    this.winners.clear();
    for (const set of this.criterionSets.values()) {
      for (const input of set.querySelectorAll('input')) input.checked = false;
    }
    this.syncAnswer();
  }

  protected editTarget(): EditTarget | null {
    const responses = this.assignment?.item.responses;
    if (!responses || (this.choice !== 'a' && this.choice !== 'b')) return null;
    const index = this.choice === 'a' ? 0 : 1;
    return { response: responses[index], label: `Response ${positionLetter(index)}` };
  }

  protected editUnavailableReason(): string {
    return 'Choose A or B first: the edit rewrites the preferred reply.';
  }

  protected validate(): Problem | null {
    const { options } = this.config;
    const missing = this.criteria.find((c) => !this.winners.has(c.name));
    if (missing) {
      return { message: `Choose a winner for “${missing.label}”.`, focus: this.criterionSets.get(missing.name)?.querySelector('input') };
    }
    if (!this.choice) {
      return {
        message:
          'Choose an answer first: A is better, B is better' + (options.allowTies ? ', Tie' : '') + (options.allowBothBad ? ' or Both bad' : '') + '.',
      };
    }
    if (options.strength && (this.choice === 'a' || this.choice === 'b') && this.strength === null) {
      return { message: 'Choose how much better (1–3).' };
    }
    return null;
  }

  protected kindSubmission(assignment: Assignment): Omit<PairwiseSubmission, 'rationale' | 'time_taken_ms'> {
    const [left, right] = assignment.item.responses;
    let outcome: Outcome;
    let preferred: ResponseId | null = null;
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
    const body: Omit<PairwiseSubmission, 'rationale' | 'time_taken_ms'> = {
      outcome,
      preferred_response_id: preferred,
      strength: outcome === 'preferred' && this.config.options.strength ? this.strength : null,
    };
    if (this.criteria.length > 0) {
      body.criteria = {};
      for (const c of this.criteria) {
        const side = this.winners.get(c.name)!;
        body.criteria[c.name] = side === 'tie' ? 'tie' : side === 'a' ? left.id : right.id;
      }
    }
    return body;
  }

  // ------------------------------------------------------------ responses, diff, linked scrolling

  protected renderResponses(assignment: Assignment): HTMLElement {
    this.responsesEl = h(
      'section',
      { className: 'responses responses-pair', 'aria-label': 'Candidate responses', 'data-choice': '' },
      ...assignment.item.responses.map((response, index) => renderResponse(response, index)),
    );
    this.responsesEl.classList.toggle('sync-scroll', this.syncOn);
    this.responsesEl.classList.toggle('diff-on', false);
    const bodies = [...this.responsesEl.querySelectorAll<HTMLElement>('.response-body')];
    let leader: HTMLElement | null = null;
    let release = 0;
    for (const body of bodies) {
      body.addEventListener('scroll', () => {
        if (!this.syncOn || (leader && leader !== body)) return;
        leader = body;
        window.clearTimeout(release);
        release = window.setTimeout(() => (leader = null), 120);
        const range = body.scrollHeight - body.clientHeight;
        const share = range > 0 ? body.scrollTop / range : 0;
        for (const other of bodies) {
          if (other !== body) other.scrollTop = share * (other.scrollHeight - other.clientHeight);
        }
      }, { passive: true });
    }
    return this.responsesEl;
  }

  protected afterRender(): void {
    if (this.diffOn) this.showDiff();
  }

  private setDiff(on: boolean): void {
    this.diffOn = on;
    this.diffToggle.setAttribute('aria-pressed', String(on));
    if (on) this.showDiff();
    else this.responsesEl?.classList.remove('diff-on');
  }

  private showDiff(): void {
    const responses = this.assignment?.item.responses;
    const el = this.responsesEl;
    if (!responses || !el || responses.length !== 2) return;
    const cards = [...el.querySelectorAll<HTMLElement>('.response-card')];
    if (!el.querySelector('.diff-view')) {
      const { left, right } = diffSides(responses[0].content, responses[1].content);
      cards[0]?.querySelector('.response-body')?.append(diffElement(left, 'left'));
      cards[1]?.querySelector('.response-body')?.append(diffElement(right, 'right'));
    }
    el.classList.add('diff-on');
  }

  private setSync(on: boolean): void {
    this.syncOn = on;
    store(SYNC_KEY, on ? '1' : '0');
    this.syncToggle.setAttribute('aria-pressed', String(on));
    this.responsesEl?.classList.toggle('sync-scroll', on);
  }
}
