/**
 * Rating: each response scored on each criterion (Likert scales with labels),
 * and thumbs up / down for a 0–1 criterion (single-response feedback).
 *
 * Every score is a radio group (fieldset + legend) on the response's card.
 * Keyboard: digits rate the current group (the focused one, else the next
 * unrated), U / D give thumbs up / down, and focus then moves to the next
 * group; Tab and the arrow keys work as for any radio group.
 */
import { h, kbd } from '../dom';
import { BaseJudge, type Problem } from './base';
import type { Shortcut } from './keyboard';
import { positionLetter, renderResponse } from './render';
import type { EditTarget } from './rewrite';
import type { Assignment, Criterion, RatingSubmission, ResponseId } from './types';

interface Group {
  responseId: ResponseId;
  index: number;
  criterion: Criterion;
  set: HTMLFieldSetElement;
  inputs: HTMLInputElement[];
}

export function isThumbs(criterion: Criterion): boolean {
  return criterion.scale.min === 0 && criterion.scale.max === 1;
}

/** The scale point a digit key means on this scale, or null (0 means 10 on a 1–10 scale). */
export function digitValue(criterion: Criterion, digit: number): number | null {
  const { min, max } = criterion.scale;
  const value = digit === 0 && min >= 1 && max === 10 ? 10 : digit;
  if (max > 10 || min < 0) return null;
  return value >= min && value <= max ? value : null;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

function thumbIcon(down: boolean): SVGSVGElement {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '28');
  svg.setAttribute('height', '28');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.classList.add('thumb-icon');
  if (down) svg.style.transform = 'rotate(180deg)';
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('fill', 'currentColor');
  path.setAttribute(
    'd',
    'M2 21h4V9H2v12zm20-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L13.17 1 6.59 7.59C6.22 7.95 6 8.45 6 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-2z',
  );
  svg.append(path);
  return svg;
}

export class RatingJudge extends BaseJudge {
  private groups: Group[] = [];
  private current = 0;
  private summary!: HTMLElement;

  private get criteria(): Criterion[] {
    return this.config.criteria;
  }

  private get hasThumbs(): boolean {
    return this.criteria.some(isThumbs);
  }

  private get onlyThumbs(): boolean {
    return this.criteria.length > 0 && this.criteria.every(isThumbs);
  }

  protected kindShortcuts(): Shortcut[] {
    const list: Shortcut[] = [];
    if (this.criteria.some((c) => !isThumbs(c))) {
      for (let d = 0; d <= 9; d++) {
        list.push({
          key: String(d),
          label: d === 1 ? '1–9, 0' : String(d),
          description: 'Rate the current criterion (0 = 10 on a 1–10 scale), then go to the next',
          hidden: d !== 1,
          enabled: () => this.canAnswer() && this.groupForDigit(d) !== null,
          run: () => {
            const group = this.groupForDigit(d);
            if (group) this.rate(group, digitValue(group.criterion, d)!, true);
          },
        });
      }
    }
    if (this.hasThumbs) {
      list.push(
        { key: 'u', label: 'U', description: 'Thumbs up', enabled: this.canAnswer, run: () => this.thumb(1) },
        { key: 'd', label: 'D', description: 'Thumbs down', enabled: this.canAnswer, run: () => this.thumb(0) },
      );
    }
    list.push({
      key: 'n',
      label: 'N',
      description: 'Go to the next unrated criterion',
      enabled: this.canAnswer,
      run: () => this.focusGroup(this.nextUnrated(0) ?? 0),
    });
    return list;
  }

  protected rewriteTitle(): string {
    return 'Edit the reply';
  }

  protected editUnavailableReason(): string {
    return 'Editing is only offered when a single response is shown.';
  }

  protected rationaleLabel(): string {
    return this.onlyThumbs ? 'Reason' : 'Rationale';
  }

  protected rationalePlaceholder(): string {
    return this.onlyThumbs ? 'Optional: what was good or bad about it?' : super.rationalePlaceholder();
  }

  protected buildControls(): HTMLElement {
    this.summary = h('p', { className: 'rating-summary', 'data-testid': 'rating-summary', 'aria-live': 'polite' });
    const help = this.onlyThumbs
      ? h('p', { className: 'muted small' }, 'Press ', kbd('U'), ' for thumbs up or ', kbd('D'), ' for thumbs down.')
      : h(
          'p',
          { className: 'muted small' },
          'Number keys rate the highlighted criterion and move on; ',
          kbd('Tab'),
          ' and the arrow keys also work',
          this.hasThumbs ? '; ' : '.',
          this.hasThumbs ? kbd('U') : null,
          this.hasThumbs ? ' / ' : null,
          this.hasThumbs ? kbd('D') : null,
          this.hasThumbs ? ' give thumbs up / down.' : null,
        );
    return h('div', { className: 'rating-controls' }, this.summary, help);
  }

  protected setKindEnabled(enabled: boolean): void {
    for (const group of this.groups) group.set.disabled = !enabled;
  }

  // ------------------------------------------------------------ rendering

  protected renderResponses(assignment: Assignment): HTMLElement {
    this.groups = [];
    const cards = assignment.item.responses.map((response, index) => {
      const panel = h('div', { className: 'rating-panel' });
      for (const criterion of this.criteria) panel.append(this.buildGroup(response.id, index, criterion));
      return renderResponse(response, index, panel);
    });
    const single = assignment.item.responses.length === 1;
    return h(
      'section',
      { className: `responses responses-rating${single ? ' responses-single' : ''}`, 'aria-label': single ? 'Response to rate' : 'Responses to rate' },
      ...cards,
    );
  }

  private buildGroup(responseId: ResponseId, index: number, criterion: Criterion): HTMLFieldSetElement {
    const letter = positionLetter(index);
    const lower = letter.toLowerCase();
    const base = `rate-${lower}-${criterion.name}`;
    const thumbs = isThumbs(criterion);
    const { min, max, labels } = criterion.scale;
    const points = thumbs ? [1, 0] : Array.from({ length: max - min + 1 }, (_, i) => min + i);
    const inputs: HTMLInputElement[] = [];
    const options = points.map((value) => {
      const id = `${base}-${value}`;
      const input = h('input', { type: 'radio', id, name: base, value, 'data-testid': id });
      inputs.push(input);
      const text = labels[String(value)] ?? '';
      if (thumbs) {
        const word = text || (value === 1 ? 'Good' : 'Bad');
        return h(
          'label',
          { className: `thumb thumb-${value === 1 ? 'up' : 'down'}`, for: id },
          input,
          thumbIcon(value === 0),
          h('span', { className: 'thumb-text' }, value === 1 ? 'Thumbs up' : 'Thumbs down', h('span', { className: 'thumb-word' }, word)),
          kbd(value === 1 ? 'U' : 'D'),
        );
      }
      return h(
        'label',
        { className: 'scale-point', for: id },
        input,
        h('span', { className: 'scale-value' }, String(value)),
        text ? h('span', { className: 'scale-label' }, text) : null,
      );
    });
    const set = h(
      'fieldset',
      {
        className: `rating-group${thumbs ? ' rating-thumbs' : ''}`,
        'data-testid': base,
        'data-criterion': criterion.name,
        'data-response-id': responseId,
      },
      h(
        'legend',
        { className: 'criterion-legend' },
        h('span', { className: 'criterion-name' }, criterion.label),
        h('span', { className: 'visually-hidden' }, ` — Response ${letter}`),
        thumbs ? null : h('span', { className: 'scale-range muted small' }, ` ${min}–${max}`),
      ),
      criterion.description ? h('p', { className: 'criterion-desc muted small' }, criterion.description) : null,
      h('div', { className: thumbs ? 'thumb-row' : `scale-row points-${points.length}` }, ...options),
    );
    const group: Group = { responseId, index, criterion, set, inputs };
    const position = this.groups.length;
    this.groups.push(group);
    for (const input of inputs) input.addEventListener('change', () => this.rate(group, Number(input.value), false));
    set.addEventListener('focusin', () => this.setCurrent(position));
    return set;
  }

  // ------------------------------------------------------------ state

  private value(group: Group): number | null {
    const checked = group.inputs.find((i) => i.checked);
    return checked ? Number(checked.value) : null;
  }

  private nextUnrated(from: number): number | null {
    for (let k = 0; k < this.groups.length; k++) {
      const i = (from + k) % this.groups.length;
      if (this.value(this.groups[i]) === null) return i;
    }
    return null;
  }

  /** The group a key acts on: the one holding the focus, else the current one. */
  private activeGroup(): Group | null {
    const set = document.activeElement?.closest('.rating-group');
    const focused = this.groups.find((g) => g.set === set);
    return focused ?? this.groups[this.current] ?? null;
  }

  private groupForDigit(digit: number): Group | null {
    const group = this.activeGroup();
    if (!group || isThumbs(group.criterion)) return null;
    return digitValue(group.criterion, digit) === null ? null : group;
  }

  private thumb(value: 0 | 1): void {
    const active = this.activeGroup();
    let group = active && isThumbs(active.criterion) ? active : null;
    // Otherwise: the thumbs criterion of the active response, else the first unrated thumbs group.
    group ??= this.groups.find((g) => isThumbs(g.criterion) && g.responseId === active?.responseId) ?? null;
    group ??= this.groups.find((g) => isThumbs(g.criterion) && this.value(g) === null) ?? this.groups.find((g) => isThumbs(g.criterion)) ?? null;
    if (group) this.rate(group, value, true);
  }

  private rate(group: Group, value: number, fromKey: boolean): void {
    if (!this.assignment || this.busy) return;
    const input = group.inputs.find((i) => Number(i.value) === value);
    if (!input) return;
    input.checked = true;
    this.clearError();
    this.syncSummary();
    if (fromKey) {
      const position = this.groups.indexOf(group);
      if (position < this.groups.length - 1) this.focusGroup(position + 1);
      else if (this.nextUnrated(0) !== null) this.focusGroup(this.nextUnrated(0)!);
      else this.focusSubmit();
    }
  }

  private setCurrent(position: number): void {
    this.current = position;
    this.groups.forEach((g, i) => g.set.classList.toggle('is-current', i === position));
  }

  private focusGroup(position: number): void {
    const group = this.groups[position];
    if (!group) return;
    this.setCurrent(position);
    (group.inputs.find((i) => i.checked) ?? group.inputs[0])?.focus();
  }

  private syncSummary(): void {
    const given = this.groups.filter((g) => this.value(g) !== null).length;
    this.summary.textContent = `${given} of ${this.groups.length} rating${this.groups.length === 1 ? '' : 's'} given`;
    this.summary.classList.toggle('is-complete', given === this.groups.length);
  }

  protected resetAnswer(): void {
    for (const group of this.groups) for (const input of group.inputs) input.checked = false;
    this.setCurrent(0);
    this.syncSummary();
  }

  protected editTarget(): EditTarget | null {
    const responses = this.assignment?.item.responses;
    if (!responses || responses.length !== 1) return null;
    return { response: responses[0], label: 'the response' };
  }

  protected validate(): Problem | null {
    const missing = this.groups.find((g) => this.value(g) === null);
    if (!missing) return null;
    const letter = positionLetter(missing.index);
    const many = (this.assignment?.item.responses.length ?? 1) > 1;
    this.setCurrent(this.groups.indexOf(missing));
    return {
      message: `Rate “${missing.criterion.label}”${many ? ` for Response ${letter}` : ''} first.`,
      focus: missing.inputs[0],
    };
  }

  protected kindSubmission(assignment: Assignment): Omit<RatingSubmission, 'rationale' | 'time_taken_ms'> {
    const ratings: Record<string, Record<string, number>> = {};
    for (const response of assignment.item.responses) ratings[response.id] = {};
    for (const group of this.groups) ratings[group.responseId][group.criterion.name] = this.value(group)!;
    return { outcome: 'rated', ratings };
  }
}
