/**
 * Live progress on the campaign page (templates/annotation/campaign_detail.html).
 *
 * Opens the websocket named by `data-live-url` on `.live-progress`, and writes each snapshot
 * `{"type": "progress", "counts": {...}}` into the elements marked `data-count="<name>"`.
 * Reconnects with capped, jittered exponential backoff; a 4403 close (not allowed any more,
 * e.g. the session ended) stops and asks for a reload.
 */

type Counts = Record<string, number>;
type State = 'connecting' | 'live' | 'reconnecting' | 'stopped';

const CLOSE_FORBIDDEN = 4403;
const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 15_000;

const LABELS: Record<State, string> = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  stopped: 'Not live: reload the page',
};

/** ws:// or wss:// (as the page) URL for a path on this host. */
function socketUrl(path: string): string {
  const url = new URL(path, window.location.href);
  url.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

function startLiveProgress(root: HTMLElement, url: string): void {
  const indicator = root.querySelector<HTMLElement>('[data-testid=live-status]');
  const numberFormat = new Intl.NumberFormat();
  let socket: WebSocket | null = null;
  let attempt = 0;
  let timer: number | undefined;
  let stopped = false;

  function setState(state: State): void {
    if (!indicator) return;
    indicator.dataset.state = state;
    const label = indicator.querySelector('.live-label') ?? indicator;
    label.textContent = LABELS[state];
  }

  function render(counts: Counts): void {
    for (const el of root.querySelectorAll<HTMLElement>('[data-count]')) {
      const value = counts[el.dataset.count ?? ''];
      if (typeof value !== 'number' || !Number.isFinite(value)) continue;
      const text = numberFormat.format(value);
      if (el.textContent === text) continue;
      el.textContent = text;
      el.classList.remove('changed');
      void el.offsetWidth; // restart the flash animation
      el.classList.add('changed');
    }
  }

  function onMessage(event: MessageEvent): void {
    let data: unknown;
    try {
      data = JSON.parse(String(event.data));
    } catch {
      return;
    }
    if (!data || typeof data !== 'object') return;
    const message = data as { type?: unknown; counts?: unknown };
    if (message.type !== 'progress' || !message.counts || typeof message.counts !== 'object') return;
    attempt = 0;
    setState('live');
    render(message.counts as Counts);
  }

  function retry(): void {
    setState('reconnecting');
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** attempt);
    attempt += 1;
    timer = window.setTimeout(connect, base / 2 + Math.random() * (base / 2));
  }

  function connect(): void {
    timer = undefined;
    if (stopped) return;
    let ws: WebSocket;
    try {
      ws = new WebSocket(url);
    } catch {
      retry();
      return;
    }
    socket = ws;
    ws.addEventListener('message', onMessage);
    ws.addEventListener('close', (event) => {
      if (socket !== ws) return;
      socket = null;
      if (event.code === CLOSE_FORBIDDEN) {
        stopped = true;
        setState('stopped');
        return;
      }
      retry();
    });
  }

  /** Skip the rest of a backoff wait: the tab or the network came back. */
  function reconnectNow(): void {
    if (stopped || socket || timer === undefined) return;
    window.clearTimeout(timer);
    attempt = 0;
    connect();
  }

  window.addEventListener('online', reconnectNow);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') reconnectNow();
  });
  window.addEventListener('pagehide', (event) => {
    if (event.persisted) return; // kept in the back/forward cache: the close event reconnects
    stopped = true;
    if (timer !== undefined) window.clearTimeout(timer);
    const ws = socket;
    socket = null;
    ws?.close(1000);
  });
  connect();
}

function main(): void {
  const root = document.querySelector<HTMLElement>('.live-progress[data-live-url]');
  const path = root?.dataset.liveUrl;
  if (!root || !path || typeof WebSocket === 'undefined') return;
  startLiveProgress(root, socketUrl(path));
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', main, { once: true });
} else {
  main();
}
