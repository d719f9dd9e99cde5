/** Flag checkboxes (on a judgment) and the skip-reason list, shared by every kind. */
import { h, kbd } from '../dom';
import type { FlagReason } from './types';

/** Used when the server predates configurable reasons; values match serving.SKIP_REASONS. */
export const DEFAULT_REASONS: FlagReason[] = [
  { value: 'cant_judge', label: "Can't judge" },
  { value: 'unsafe', label: 'Unsafe content' },
  { value: 'private_data', label: 'Private data' },
  { value: 'broken', label: 'Broken item' },
];

export function skipReasons(flagReasons: FlagReason[] | null): FlagReason[] {
  const base = flagReasons && flagReasons.length > 0 ? flagReasons : DEFAULT_REASONS;
  return [...base.filter((r) => r.value !== 'other'), { value: 'other', label: 'Other' }];
}

export class FlagsField {
  readonly element: HTMLFieldSetElement;
  private readonly boxes: HTMLInputElement[] = [];

  constructor(reasons: FlagReason[]) {
    const list = h('div', { className: 'flag-list' });
    for (const reason of reasons) {
      const id = `flag-${reason.value}`;
      const box = h('input', { type: 'checkbox', id, name: 'flags', value: reason.value, 'data-testid': id });
      this.boxes.push(box);
      list.append(h('label', { className: 'flag-option', for: id }, box, reason.label));
    }
    this.element = h(
      'fieldset',
      { className: 'flags-field', 'data-testid': 'flags' },
      h('legend', {}, 'Flag this item ', h('span', { className: 'muted' }, '(optional)'), ' ', kbd('F')),
      list,
    );
  }

  values(): string[] {
    return this.boxes.filter((b) => b.checked).map((b) => b.value);
  }

  reset(): void {
    for (const box of this.boxes) box.checked = false;
  }

  setEnabled(enabled: boolean): void {
    this.element.disabled = !enabled;
  }

  focus(): void {
    this.boxes[0]?.focus();
  }
}
