/** Rendering of conversations and candidate responses (shared by judging kinds). */
import { h } from '../dom';
import { markdownElement } from '../markdown';
import type { CandidateResponse, ChatMessage } from './types';

const ROLE_LABELS: Record<string, string> = {
  user: 'User',
  assistant: 'Assistant',
  system: 'System',
};

export function roleLabel(role: string): string {
  return ROLE_LABELS[role] ?? role.charAt(0).toUpperCase() + role.slice(1);
}

export function renderMessage(message: ChatMessage): HTMLElement {
  const role = ROLE_LABELS[message.role] ? message.role : 'other';
  return h(
    'article',
    { className: `chat-message role-${role}`, 'data-testid': 'message', 'data-role': message.role },
    h('div', { className: 'chat-role' }, roleLabel(message.role)),
    markdownElement(message.content),
  );
}

export function renderConversation(messages: ChatMessage[]): HTMLElement {
  const list = h('div', { className: 'conversation-list' });
  if (messages.length === 0) {
    list.append(h('p', { className: 'muted' }, 'No conversation context.'));
  }
  for (const message of messages) list.append(renderMessage(message));
  return h(
    'section',
    { className: 'conversation', 'aria-labelledby': 'conversation-heading' },
    h('h3', { id: 'conversation-heading', className: 'section-heading' }, 'Conversation'),
    list,
  );
}

/** Letter labels for the display positions (A, B, C, ...). */
export function positionLetter(index: number): string {
  return String.fromCharCode(65 + index);
}

export function responseLabel(index: number): string {
  return `Response ${positionLetter(index)}`;
}

/** The scrollable text of a response (markdown), focusable so long replies scroll by keyboard. */
export function responseBody(response: CandidateResponse, index: number): HTMLElement {
  return h(
    'div',
    { className: 'response-body', role: 'region', tabindex: 0, 'aria-label': `${responseLabel(index)} text` },
    markdownElement(response.content),
  );
}

export function renderResponse(response: CandidateResponse, index: number, ...extra: (Node | null)[]): HTMLElement {
  const letter = positionLetter(index);
  const headingId = `response-${letter.toLowerCase()}-heading`;
  return h(
    'article',
    {
      className: `response-card response-${letter.toLowerCase()}`,
      'data-testid': `response-${letter.toLowerCase()}`,
      'data-response-id': response.id,
      'aria-labelledby': headingId,
    },
    h(
      'h3',
      { className: 'response-heading', id: headingId },
      h('span', { className: 'response-letter', 'aria-hidden': 'true' }, letter),
      `Response ${letter}`,
    ),
    responseBody(response, index),
    ...extra,
  );
}

export function renderResponses(responses: CandidateResponse[]): HTMLElement {
  return h(
    'section',
    { className: 'responses', 'aria-label': 'Candidate responses' },
    ...responses.map((response, index) => renderResponse(response, index)),
  );
}
