/** Global, page-independent behaviour. Loaded on every page by base.html. */
import './styles/app.css';

document.documentElement.classList.add('js');

// <form data-confirm="Really delete?"> or <button data-confirm="..."> asks first.
document.addEventListener(
  'submit',
  (event) => {
    const form = event.target;
    if (!(event instanceof SubmitEvent) || !(form instanceof HTMLFormElement)) return;
    const submitter = event.submitter as HTMLElement | null;
    const message = submitter?.dataset.confirm ?? form.dataset.confirm;
    if (message && !window.confirm(message)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  },
  true,
);

document.addEventListener('click', (event) => {
  const target = event.target instanceof Element ? event.target.closest<HTMLElement>('a[data-confirm]') : null;
  if (target && !window.confirm(target.dataset.confirm ?? 'Are you sure?')) {
    event.preventDefault();
  }
});

// Dismissable flash messages.
for (const el of document.querySelectorAll<HTMLElement>('.messages .message')) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'message-close';
  button.setAttribute('aria-label', 'Dismiss message');
  button.textContent = '×';
  button.addEventListener('click', () => el.remove());
  el.append(button);
}
