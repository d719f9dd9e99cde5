/**
 * The people page (templates/annotation/campaign_people.html): copy an invite link with one
 * click (the link stays selectable in its field for copying by hand).
 */

export {};

async function copyText(input: HTMLInputElement): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(input.value);
    return true;
  } catch {
    input.focus();
    input.select();
    return document.execCommand('copy');
  }
}

function main(): void {
  for (const button of document.querySelectorAll<HTMLButtonElement>('button[data-copy]')) {
    const input = document.getElementById(button.dataset.copy ?? '') as HTMLInputElement | null;
    if (!input) continue;
    const status = document.createElement('span');
    status.className = 'copy-status small muted';
    status.setAttribute('role', 'status');
    button.after(status);
    button.addEventListener('click', () => {
      void copyText(input).then((ok) => {
        status.textContent = ok ? 'Copied.' : 'Select the link and copy it.';
        window.setTimeout(() => (status.textContent = ''), 4000);
      });
    });
  }
  for (const input of document.querySelectorAll<HTMLInputElement>('input.invite-url')) {
    input.addEventListener('focus', () => input.select());
  }
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', main, { once: true });
} else {
  main();
}
