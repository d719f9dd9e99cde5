/**
 * The campaign wizard (templates/annotation/campaign_form.html): criteria rows added and removed
 * in place, options shown for the kinds they apply to, and a live, sanitized preview of the
 * markdown instructions. The judging preview is a plain form submit into the preview frame
 * (formaction / formtarget), so it renders the real judging page from the unsaved settings.
 */
import './styles/console.css';
import { renderMarkdown } from './markdown';

type Kind = 'pairwise' | 'ranking' | 'rating';

/** Options that only mean something for some kinds. */
const OPTION_KINDS: Record<string, Kind[]> = {
  allow_both_bad: ['pairwise'],
  use_strength: ['pairwise'],
  allow_ties: ['pairwise', 'ranking'],
};

function currentKind(form: HTMLFormElement): Kind {
  const checked = form.querySelector<HTMLInputElement>('input[name="kind"]:checked');
  const value = checked?.value;
  return value === 'ranking' || value === 'rating' ? value : 'pairwise';
}

function applyKind(form: HTMLFormElement): void {
  const kind = currentKind(form);
  form.dataset.kind = kind;
  for (const hint of form.querySelectorAll<HTMLElement>('.kind-hint')) {
    hint.hidden = hint.dataset.kind !== kind;
  }
  for (const scale of form.querySelectorAll<HTMLElement>('.scale-fields')) {
    scale.hidden = kind === 'pairwise';
  }
  const add = form.querySelector<HTMLButtonElement>('[data-action=add-criterion]');
  if (add) add.hidden = kind === 'ranking';
  for (const field of form.querySelectorAll<HTMLElement>('[data-option]')) {
    const kinds = OPTION_KINDS[field.dataset.option ?? ''];
    const unused = kinds !== undefined && !kinds.includes(kind);
    field.classList.toggle('option-unused', unused);
    let note = field.querySelector<HTMLElement>('.option-note');
    if (unused && !note) {
      note = document.createElement('span');
      note.className = 'option-note helptext';
      field.append(note);
    }
    if (note) note.textContent = unused ? `Not used in a ${kind} campaign.` : '';
  }
}

function renumber(form: HTMLFormElement): void {
  let n = 0;
  for (const row of form.querySelectorAll<HTMLElement>('.criteria-rows .criterion-row')) {
    if (row.hidden) continue;
    n += 1;
    for (const number of row.querySelectorAll('.criterion-number')) number.textContent = String(n);
  }
}

function enhanceRow(form: HTMLFormElement, row: HTMLElement): void {
  const remove = row.querySelector<HTMLButtonElement>('[data-action=remove-criterion]');
  const checkbox = row.querySelector<HTMLInputElement>('input[type=checkbox][name$="-DELETE"]');
  const checkboxField = row.querySelector<HTMLElement>('.criterion-remove');
  if (!remove || !checkbox) return;
  if (checkbox.checked) row.hidden = true;
  if (checkboxField) checkboxField.hidden = true;
  remove.hidden = false;
  remove.addEventListener('click', () => {
    checkbox.checked = true;
    row.hidden = true;
    renumber(form);
    form.querySelector<HTMLButtonElement>('[data-action=add-criterion]')?.focus();
  });
}

function setUpCriteria(form: HTMLFormElement): void {
  const rows = form.querySelector<HTMLElement>('.criteria-rows');
  const template = document.getElementById('criterion-template') as HTMLTemplateElement | null;
  const total = form.querySelector<HTMLInputElement>('input[name="criteria-TOTAL_FORMS"]');
  const add = form.querySelector<HTMLButtonElement>('[data-action=add-criterion]');
  if (!rows || !template || !total || !add) return;
  for (const row of rows.querySelectorAll<HTMLElement>('.criterion-row')) enhanceRow(form, row);
  add.hidden = false;
  add.addEventListener('click', () => {
    const index = Number(total.value) || 0;
    const html = template.innerHTML.replace(/__prefix__/g, String(index));
    const holder = document.createElement('div');
    holder.innerHTML = html; // our own server-rendered template: form controls, no user content
    const row = holder.querySelector<HTMLElement>('.criterion-row');
    if (!row) return;
    rows.append(row);
    total.value = String(index + 1);
    enhanceRow(form, row);
    renumber(form);
    applyKind(form);
    row.querySelector<HTMLInputElement>('input[name$="-name"]')?.focus();
  });
  renumber(form);
}

function setUpInstructionsPreview(form: HTMLFormElement): void {
  const source = form.querySelector<HTMLTextAreaElement>('textarea[name="instructions"]');
  const preview = document.getElementById('instructions-preview');
  if (!source || !preview) return;
  let timer: number | undefined;
  const render = (): void => {
    const text = source.value;
    if (text.trim() === '') {
      preview.replaceChildren();
      const p = document.createElement('p');
      p.className = 'muted';
      p.textContent = 'The rendered instructions appear here as you type.';
      preview.append(p);
      return;
    }
    preview.innerHTML = renderMarkdown(text); // markdown-it without raw HTML, then DOMPurify
  };
  source.addEventListener('input', () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(render, 120);
  });
  render();
}

function setUpJudgePreview(form: HTMLFormElement): void {
  const button = form.querySelector<HTMLButtonElement>('[data-testid=show-preview]');
  const frame = form.querySelector<HTMLIFrameElement>('iframe.judge-preview');
  if (!button || !frame) return;
  button.addEventListener('click', () => {
    frame.classList.add('is-loaded');
    frame.addEventListener('load', () => frame.scrollIntoView({ block: 'nearest' }), { once: true });
  });
}

function main(): void {
  const form = document.getElementById('campaign-form') as HTMLFormElement | null;
  if (!form) return;
  for (const radio of form.querySelectorAll<HTMLInputElement>('input[name="kind"]')) {
    radio.addEventListener('change', () => applyKind(form));
  }
  setUpCriteria(form);
  setUpInstructionsPreview(form);
  setUpJudgePreview(form);
  applyKind(form);
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', main, { once: true });
} else {
  main();
}
