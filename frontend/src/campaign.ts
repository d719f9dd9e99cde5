/**
 * Live progress on the campaign page (templates/annotation/campaign_detail.html).
 *
 * Opens the websocket named by `data-live-url` on `.live-progress`, and writes each snapshot
 * `{"type": "progress", "counts": {...}}` into the elements marked `data-count="<name>"`.
 * The socket, its reconnects and the "Live" indicator are live.ts's.
 */
import { flash } from './dom';
import { openLiveSocket } from './live';

type Counts = Record<string, number>;

function startLiveProgress(root: HTMLElement, path: string): void {
  const numberFormat = new Intl.NumberFormat();

  function render(counts: Counts): void {
    for (const el of root.querySelectorAll<HTMLElement>('[data-count]')) {
      const value = counts[el.dataset.count ?? ''];
      if (typeof value !== 'number' || !Number.isFinite(value)) continue;
      const text = numberFormat.format(value);
      if (el.textContent === text) continue;
      el.textContent = text;
      flash(el);
    }
  }

  openLiveSocket(path, {
    indicator: root.querySelector<HTMLElement>('[data-testid=live-status]'),
    read: (message) =>
      message.type === 'progress' && message.counts && typeof message.counts === 'object'
        ? (message.counts as Counts)
        : null,
    onMessage: render,
  });
}

function main(): void {
  const root = document.querySelector<HTMLElement>('.live-progress[data-live-url]');
  const path = root?.dataset.liveUrl;
  if (!root || !path) return;
  startLiveProgress(root, path);
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', main, { once: true });
} else {
  main();
}
