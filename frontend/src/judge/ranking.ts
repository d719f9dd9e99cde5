/**
 * K-wise ranking (K = 2–9): order the responses best first, ties allowed.
 *
 * The order is a list of tie groups. Cards move by keyboard (focus a card:
 * K / J or Alt+↑ / Alt+↓, a digit puts it at that rank, = ties it with the
 * card above, - unties), by the buttons on each card (phones), by mouse drag
 * (HTML5 drag and drop from the grip) and by touch/pen drag (pointer events).
 */
import { h, kbd } from '../dom';
import { BaseJudge, store, storedFlag, toolbarToggle, type Problem } from './base';
import type { Shortcut } from './keyboard';
import { markdownElement } from '../markdown';
import { positionLetter } from './render';
import type { EditTarget } from './rewrite';
import type { Assignment, CandidateResponse, RankingSubmission, ResponseId } from './types';

type Drop = { target: ResponseId; where: 'before' | 'after' | 'tie' };

const COLLAPSE_KEY = 'arbiter.judge.collapseAll';

/** Pure ranking operations on tie groups (best first); each returns a new list. */
export const Ranking = {
  clean(groups: ResponseId[][]): ResponseId[][] {
    return groups.filter((g) => g.length > 0);
  },

  find(groups: ResponseId[][], id: ResponseId): [number, number] {
    for (let g = 0; g < groups.length; g++) {
      const i = groups[g].indexOf(id);
      if (i >= 0) return [g, i];
    }
    return [-1, -1];
  },

  /** Move one place up: out of its tie group (above it), or above the group before. */
  up(groups: ResponseId[][], id: ResponseId): ResponseId[][] {
    const next = groups.map((g) => [...g]);
    const [g] = Ranking.find(next, id);
    if (g < 0) return groups;
    if (next[g].length > 1) {
      next[g] = next[g].filter((x) => x !== id);
      next.splice(g, 0, [id]);
      return next;
    }
    if (g === 0) return groups;
    next.splice(g, 1);
    next.splice(g - 1, 0, [id]);
    return next;
  },

  down(groups: ResponseId[][], id: ResponseId): ResponseId[][] {
    const next = groups.map((g) => [...g]);
    const [g] = Ranking.find(next, id);
    if (g < 0) return groups;
    if (next[g].length > 1) {
      next[g] = next[g].filter((x) => x !== id);
      next.splice(g + 1, 0, [id]);
      return next;
    }
    if (g === next.length - 1) return groups;
    next.splice(g, 1);
    next.splice(g + 1, 0, [id]);
    return next;
  },

  /** Join the group above (a tie with the card(s) just above). */
  tieUp(groups: ResponseId[][], id: ResponseId): ResponseId[][] {
    const next = groups.map((g) => [...g]);
    const [g, i] = Ranking.find(next, id);
    if (g <= 0 || i > 0) return groups;
    next[g] = next[g].filter((x) => x !== id);
    next[g - 1].push(id);
    return Ranking.clean(next);
  },

  /** Leave the tie group, just below it. */
  untie(groups: ResponseId[][], id: ResponseId): ResponseId[][] {
    const next = groups.map((g) => [...g]);
    const [g] = Ranking.find(next, id);
    if (g < 0 || next[g].length < 2) return groups;
    next[g] = next[g].filter((x) => x !== id);
    next.splice(g + 1, 0, [id]);
    return next;
  },

  /** Put `id` at group position `rank` (0-based) on its own. */
  moveTo(groups: ResponseId[][], id: ResponseId, rank: number): ResponseId[][] {
    const rest = Ranking.clean(groups.map((g) => g.filter((x) => x !== id)));
    rest.splice(Math.max(0, Math.min(rank, rest.length)), 0, [id]);
    return rest;
  },

  /** Drop `id` before / after the group of `target`, or into it (a tie). */
  drop(groups: ResponseId[][], id: ResponseId, drop: Drop): ResponseId[][] {
    if (id === drop.target) return groups;
    const rest = Ranking.clean(groups.map((g) => g.filter((x) => x !== id)));
    const [g] = Ranking.find(rest, drop.target);
    if (g < 0) return groups;
    if (drop.where === 'tie') rest[g].push(id);
    else rest.splice(drop.where === 'before' ? g : g + 1, 0, [id]);
    return rest;
  },

  /** Competition ranks: a group's rank is 1 + the number of responses above it. */
  ranks(groups: ResponseId[][]): number[] {
    const out: number[] = [];
    let above = 0;
    for (const g of groups) {
      out.push(above + 1);
      above += g.length;
    }
    return out;
  },
};

export class RankingJudge extends BaseJudge {
  private groups: ResponseId[][] = [];
  private initial = '';
  private confirmedUnchanged = false;
  private cards = new Map<ResponseId, HTMLElement>();
  private letters = new Map<ResponseId, string>();
  private list: HTMLOListElement | null = null;
  private summary!: HTMLElement;
  private live!: HTMLElement;
  private collapseAllToggle!: HTMLButtonElement;
  private collapseAll = storedFlag(COLLAPSE_KEY, false);
  private dragId: ResponseId | null = null;

  private focusedId(): ResponseId | null {
    const card = document.activeElement?.closest<HTMLElement>('.rank-card');
    return card?.dataset.responseId ?? null;
  }

  private onCard = (): boolean => this.canAnswer() && this.focusedId() !== null;

  private withFocused(op: (id: ResponseId) => void): () => void {
    return () => {
      const id = this.focusedId();
      if (id !== null) op(id);
    };
  }

  protected kindShortcuts(): Shortcut[] {
    const ties = this.config.options.allowTies;
    const list: Shortcut[] = [
      { key: 'ArrowUp', label: '↑ / ↓', description: 'Focus the card above / below', enabled: this.onCard, run: this.withFocused((id) => this.focusStep(id, -1)) },
      { key: 'ArrowDown', label: '↓', description: '', hidden: true, enabled: this.onCard, run: this.withFocused((id) => this.focusStep(id, 1)) },
      { key: 'k', label: 'K', description: 'Move the focused card up (also Alt+↑)', enabled: this.onCard, run: this.withFocused((id) => this.apply(Ranking.up(this.groups, id), id, 'up')) },
      { key: 'j', label: 'J', description: 'Move the focused card down (also Alt+↓)', enabled: this.onCard, run: this.withFocused((id) => this.apply(Ranking.down(this.groups, id), id, 'down')) },
      { key: 'ArrowUp', alt: true, label: 'Alt+↑', description: '', hidden: true, enabled: this.onCard, run: this.withFocused((id) => this.apply(Ranking.up(this.groups, id), id, 'up')) },
      { key: 'ArrowDown', alt: true, label: 'Alt+↓', description: '', hidden: true, enabled: this.onCard, run: this.withFocused((id) => this.apply(Ranking.down(this.groups, id), id, 'down')) },
    ];
    for (let n = 1; n <= 9; n++) {
      list.push({
        key: String(n),
        label: n === 1 ? '1–9' : String(n),
        description: 'Put the focused card at that place',
        hidden: n > 1,
        enabled: () => this.onCard() && n <= this.groups.length + 1,
        run: this.withFocused((id) => this.apply(Ranking.moveTo(this.groups, id, n - 1), id, 'moved')),
      });
    }
    if (ties) {
      list.push(
        { key: '=', label: '=', description: 'Tie the focused card with the card above', enabled: this.onCard, run: this.withFocused((id) => this.tie(id)) },
        { key: '-', label: '-', description: 'Untie the focused card', enabled: this.onCard, run: this.withFocused((id) => this.apply(Ranking.untie(this.groups, id), id, 'untied')) },
      );
    }
    list.push(
      { key: 'c', label: 'C', description: 'Collapse / expand the focused card', enabled: this.onCard, run: this.withFocused((id) => this.toggleCollapsed(id)) },
      { key: 'z', label: 'Z', description: 'Collapse / expand all cards', run: () => this.setCollapseAll(!this.collapseAll) },
      { key: 'g', label: 'G', description: 'Go to the first card', enabled: this.canAnswer, run: () => this.cards.get(this.groups[0]?.[0])?.focus() },
    );
    return list;
  }

  protected toolbarButtons(): HTMLElement[] {
    this.collapseAllToggle = toolbarToggle('Collapse all', 'z', 'toggle-collapse-all', this.collapseAll);
    this.collapseAllToggle.addEventListener('click', () => this.setCollapseAll(!this.collapseAll));
    return [this.collapseAllToggle];
  }

  protected rewriteTitle(): string {
    return 'Edit top-ranked reply';
  }

  protected editUnavailableReason(): string {
    return 'Rank one response alone at the top to rewrite it.';
  }

  protected buildControls(): HTMLElement {
    this.summary = h('p', { className: 'ranking-summary', 'data-testid': 'ranking-summary' });
    this.live = h('p', { className: 'visually-hidden', 'aria-live': 'assertive', 'data-testid': 'ranking-live' });
    const ties = this.config.options.allowTies;
    return h(
      'div',
      { className: 'ranking-controls' },
      h('p', { className: 'group-label' }, 'Order the responses, best first'),
      h(
        'p',
        { className: 'muted small ranking-help' },
        'Drag a card by its grip, use its buttons, or focus it (Tab, G) and press ',
        kbd('K'), ' / ', kbd('J'), ' to move it',
        ties ? ' and ' : null,
        ties ? kbd('=') : null,
        ties ? ' to tie it with the card above' : null,
        '.',
      ),
      this.summary,
      this.live,
    );
  }

  private enabled = false;

  protected setKindEnabled(enabled: boolean): void {
    this.enabled = enabled;
    this.syncButtons();
  }

  // ------------------------------------------------------------ rendering

  protected renderResponses(assignment: Assignment): HTMLElement {
    this.groups = [];
    this.cards.clear();
    this.letters.clear();
    assignment.item.responses.forEach((response, index) => {
      this.letters.set(response.id, positionLetter(index));
      this.cards.set(response.id, this.buildCard(response, index));
    });
    this.list = h('ol', { className: 'ranking-list', 'data-testid': 'ranking', 'aria-label': 'Ranking, best first' });
    this.list.addEventListener('dragover', (e) => this.onDragOver(e));
    this.list.addEventListener('drop', (e) => this.onDrop(e));
    this.list.addEventListener('dragleave', (e) => {
      if (!this.list?.contains(e.relatedTarget as Node | null)) this.clearDropMarks();
    });
    return h('section', { className: 'responses responses-ranking', 'aria-label': 'Candidate responses' }, this.list);
  }

  private buildCard(response: CandidateResponse, index: number): HTMLElement {
    const letter = positionLetter(index);
    const id = response.id;
    const lower = letter.toLowerCase();
    const button = (label: string, text: string, testid: string, run: () => void, extra: Record<string, string> = {}): HTMLButtonElement => {
      const b = h('button', { type: 'button', className: 'btn btn-secondary btn-sm rank-btn', 'aria-label': `${label} (Response ${letter})`, title: label, 'data-testid': `${testid}-${lower}`, ...extra }, text);
      b.addEventListener('click', run);
      return b;
    };
    const grip = h('span', { className: 'rank-grip', draggable: 'true', title: 'Drag to reorder', 'aria-hidden': 'true', 'data-testid': `grip-${lower}` }, '⠿');
    grip.addEventListener('dragstart', (e) => this.onDragStart(e, id));
    grip.addEventListener('dragend', () => this.endDrag());
    grip.addEventListener('pointerdown', (e) => this.onPointerDown(e, id));

    const body = h('div', { className: 'response-body rank-body', id: `rank-body-${lower}` }, markdownElement(response.content));
    const collapse = button('Collapse', 'Collapse', 'collapse', () => this.toggleCollapsed(id), { 'aria-expanded': 'true', 'aria-controls': body.id });
    collapse.classList.add('rank-collapse');
    const controls = h(
      'div',
      { className: 'rank-actions' },
      button('Move up', '▲', 'up', () => this.apply(Ranking.up(this.groups, id), id, 'up')),
      button('Move down', '▼', 'down', () => this.apply(Ranking.down(this.groups, id), id, 'down')),
      this.config.options.allowTies ? button('Tie with the card above', 'Tie ↑', 'tie', () => this.tie(id)) : null,
      this.config.options.allowTies ? button('Untie', 'Untie', 'untie', () => this.apply(Ranking.untie(this.groups, id), id, 'untied')) : null,
      collapse,
    );
    const headingId = `response-${lower}-heading`;
    const card = h(
      'li',
      {
        className: `response-card rank-card response-${lower}`,
        tabindex: 0,
        'data-testid': `response-${lower}`,
        'data-response-id': id,
        'aria-labelledby': headingId,
        'aria-describedby': `rank-of-${lower}`,
        'aria-keyshortcuts': 'k j =',
      },
      h(
        'div',
        { className: 'rank-head' },
        grip,
        h('span', { className: 'rank-badge', id: `rank-of-${lower}`, 'data-testid': `rank-of-${lower}` }),
        h('h3', { className: 'response-heading', id: headingId }, h('span', { className: 'response-letter', 'aria-hidden': 'true' }, letter), `Response ${letter}`),
        controls,
      ),
      body,
    );
    card.classList.toggle('is-collapsed', this.collapseAll);
    if (this.collapseAll) collapse.setAttribute('aria-expanded', 'false');
    return card;
  }

  private draw(focusId: ResponseId | null = null): void {
    const list = this.list;
    if (!list) return;
    const ranks = Ranking.ranks(this.groups);
    const rows = this.groups.map((group, g) => {
      const tied = group.length > 1;
      const row = h(
        'li',
        { className: `rank-group${tied ? ' is-tied' : ''}`, 'data-rank': ranks[g], 'data-testid': `rank-group-${g + 1}` },
        h('div', { className: 'rank-number', 'aria-hidden': 'true' }, String(ranks[g]), tied ? h('span', { className: 'tie-tag' }, 'tie') : null),
        h('ol', { className: 'rank-group-cards', role: 'list', 'aria-label': tied ? `Tied at rank ${ranks[g]}` : `Rank ${ranks[g]}` }),
      );
      const inner = row.querySelector('ol')!;
      group.forEach((id, i) => {
        const card = this.cards.get(id)!;
        const badge = card.querySelector<HTMLElement>('.rank-badge')!;
        badge.textContent = tied ? `Rank ${ranks[g]} (tied)` : `Rank ${ranks[g]}`;
        card.dataset.rank = String(ranks[g]);
        card.dataset.first = String(i === 0);
        inner.append(card);
      });
      return row;
    });
    list.replaceChildren(...rows);
    this.syncButtons();
    this.summary.textContent = 'Order: ' + this.groups.map((g) => g.map((id) => this.letters.get(id)).join(' = ')).join(' > ');
    if (focusId !== null) this.cards.get(focusId)?.focus({ preventScroll: false });
  }

  private syncButtons(): void {
    const enabled = this.enabled && this.assignment !== null;
    this.groups.forEach((group, g) => {
      group.forEach((id, i) => {
        const card = this.cards.get(id);
        if (!card) return;
        const set = (name: string, on: boolean): void => {
          const b = card.querySelector<HTMLButtonElement>(`[data-testid^="${name}-"]`);
          if (b) b.disabled = !enabled || !on;
        };
        const alone = group.length === 1;
        set('up', !(alone && g === 0));
        set('down', !(alone && g === this.groups.length - 1));
        set('tie', g > 0 && i === 0);
        set('untie', !alone);
        set('collapse', true);
      });
    });
  }

  private apply(next: ResponseId[][], id: ResponseId, verb: string): void {
    if (!this.assignment || this.busy) return;
    if (next === this.groups) {
      this.live.textContent = `Response ${this.letters.get(id)} cannot move ${verb === 'up' ? 'up' : verb === 'down' ? 'down' : 'there'}.`;
      return;
    }
    this.groups = next;
    this.confirmedUnchanged = false;
    this.draw(id);
    const [g] = Ranking.find(this.groups, id);
    const rank = Ranking.ranks(this.groups)[g];
    const tied = this.groups[g].length > 1;
    this.live.textContent = `Response ${this.letters.get(id)} is now rank ${rank}${tied ? ', tied' : ''}.`;
    this.answerChanged();
  }

  private tie(id: ResponseId): void {
    const next = Ranking.tieUp(this.groups, id);
    if (next === this.groups) {
      this.live.textContent = 'Only the first card of a group can be tied with the card above.';
      this.setStatus(this.live.textContent);
      return;
    }
    this.apply(next, id, 'tied');
  }

  private focusStep(id: ResponseId, step: number): void {
    const order = this.groups.flat();
    const next = order[order.indexOf(id) + step];
    if (next !== undefined) this.cards.get(next)?.focus();
  }

  private toggleCollapsed(id: ResponseId, force?: boolean): void {
    const card = this.cards.get(id);
    if (!card) return;
    const collapsed = force ?? !card.classList.contains('is-collapsed');
    card.classList.toggle('is-collapsed', collapsed);
    const button = card.querySelector<HTMLButtonElement>('.rank-collapse');
    if (button) {
      button.setAttribute('aria-expanded', String(!collapsed));
      button.textContent = collapsed ? 'Expand' : 'Collapse';
      button.setAttribute('aria-label', `${collapsed ? 'Expand' : 'Collapse'} (Response ${this.letters.get(id)})`);
    }
  }

  private setCollapseAll(on: boolean): void {
    this.collapseAll = on;
    store(COLLAPSE_KEY, on ? '1' : '0');
    this.collapseAllToggle.setAttribute('aria-pressed', String(on));
    for (const id of this.cards.keys()) this.toggleCollapsed(id, on);
  }

  // ------------------------------------------------------------ drag and drop

  /** Where a drop at clientY over `card` lands: upper quarter before, lower quarter after, middle a tie. */
  private dropAt(card: HTMLElement, clientY: number): Drop {
    const rect = card.getBoundingClientRect();
    const y = (clientY - rect.top) / Math.max(rect.height, 1);
    const target = card.dataset.responseId ?? '';
    if (this.config.options.allowTies && y > 0.3 && y < 0.7) return { target, where: 'tie' };
    return { target, where: y < 0.5 ? 'before' : 'after' };
  }

  private markDrop(drop: Drop | null): void {
    this.clearDropMarks();
    if (!drop || drop.target === this.dragId) return;
    this.cards.get(drop.target)?.classList.add(`drop-${drop.where}`);
  }

  private clearDropMarks(): void {
    for (const card of this.cards.values()) card.classList.remove('drop-before', 'drop-after', 'drop-tie');
  }

  private cardAt(target: EventTarget | Element | null): HTMLElement | null {
    return target instanceof Element ? target.closest<HTMLElement>('.rank-card') : null;
  }

  private onDragStart(event: DragEvent, id: ResponseId): void {
    if (!this.canAnswer()) {
      event.preventDefault();
      return;
    }
    this.dragId = id;
    const card = this.cards.get(id)!;
    card.classList.add('is-dragging');
    if (event.dataTransfer) {
      event.dataTransfer.effectAllowed = 'move';
      event.dataTransfer.setData('text/plain', String(id));
      event.dataTransfer.setDragImage(card, 24, 24);
    }
  }

  private onDragOver(event: DragEvent): void {
    if (this.dragId === null) return;
    const card = this.cardAt(event.target);
    event.preventDefault();
    if (event.dataTransfer) event.dataTransfer.dropEffect = 'move';
    // Scroll the page when dragging near the top or bottom edge.
    if (event.clientY < 60) window.scrollBy(0, -16);
    else if (event.clientY > window.innerHeight - 60) window.scrollBy(0, 16);
    this.markDrop(card ? this.dropAt(card, event.clientY) : null);
  }

  private onDrop(event: DragEvent): void {
    if (this.dragId === null) return;
    event.preventDefault();
    const card = this.cardAt(event.target);
    const id = this.dragId;
    this.endDrag();
    if (card) this.apply(Ranking.drop(this.groups, id, this.dropAt(card, event.clientY)), id, 'moved');
  }

  private endDrag(): void {
    if (this.dragId !== null) this.cards.get(this.dragId)?.classList.remove('is-dragging');
    this.dragId = null;
    this.clearDropMarks();
  }

  /** Touch and pen: HTML5 drag and drop does not start from a finger, so follow the pointer. */
  private onPointerDown(event: PointerEvent, id: ResponseId): void {
    if (event.pointerType === 'mouse' || !this.canAnswer()) return;
    event.preventDefault();
    const grip = event.currentTarget as HTMLElement;
    grip.setPointerCapture(event.pointerId);
    this.dragId = id;
    this.cards.get(id)?.classList.add('is-dragging');
    let last: Drop | null = null;
    const move = (e: PointerEvent): void => {
      const under = this.cardAt(document.elementFromPoint(e.clientX, e.clientY));
      last = under && under.dataset.responseId !== id ? this.dropAt(under, e.clientY) : null;
      this.markDrop(last);
      // Scroll the page when dragging near the top or bottom edge.
      if (e.clientY < 60) window.scrollBy(0, -12);
      else if (e.clientY > window.innerHeight - 60) window.scrollBy(0, 12);
    };
    const up = (): void => {
      grip.removeEventListener('pointermove', move);
      grip.removeEventListener('pointerup', up);
      grip.removeEventListener('pointercancel', up);
      this.endDrag();
      if (last) this.apply(Ranking.drop(this.groups, id, last), id, 'moved');
    };
    grip.addEventListener('pointermove', move);
    grip.addEventListener('pointerup', up);
    grip.addEventListener('pointercancel', up);
  }

  // ------------------------------------------------------------ answer

  protected resetAnswer(): void {
    const responses = this.assignment?.item.responses ?? [];
    this.groups = responses.map((r) => [r.id]);
    this.initial = JSON.stringify(this.groups);
    this.confirmedUnchanged = false;
    this.live.textContent = '';
    this.draw();
  }

  protected editTarget(): EditTarget | null {
    const top = this.groups[0];
    const responses = this.assignment?.item.responses;
    if (!responses || !top || top.length !== 1) return null;
    const response = responses.find((r) => r.id === top[0]);
    return response ? { response, label: `Response ${this.letters.get(response.id)} (ranked first)` } : null;
  }

  protected validate(): Problem | null {
    const all = this.groups.flat();
    const shown = this.assignment?.item.responses.map((r) => r.id) ?? [];
    if (all.length !== shown.length || shown.some((id) => !all.includes(id))) {
      return { message: 'Every response must be ranked.' };
    }
    if (JSON.stringify(this.groups) === this.initial && !this.confirmedUnchanged && shown.length > 1) {
      this.confirmedUnchanged = true;
      return {
        message: 'You have not changed the order. Submit again to keep it as shown (A best), or move the cards first.',
        focus: this.cards.get(this.groups[0][0]),
      };
    }
    return null;
  }

  protected kindSubmission(): Omit<RankingSubmission, 'rationale' | 'time_taken_ms'> {
    return { outcome: 'ranked', ranking: this.groups.map((g) => [...g]) };
  }
}
