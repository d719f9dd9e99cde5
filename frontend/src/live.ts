/**
 * A live page's websocket (the campaign page, the dashboard, a training run's page).
 *
 * `openLiveSocket` opens the socket at a path on this host and keeps it open: each JSON message
 * the page accepts is handed to it, a dropped socket reconnects with capped, jittered exponential
 * backoff, the wait is skipped when the tab or the network comes back, and a 4403 close (not
 * allowed any more, e.g. the session ended) stops and asks for a reload. The page's
 * `[data-testid=live-status]` indicator shows the state ("Live", "Reconnecting…", ...).
 *
 * `LiveSocket` holds the reconnect logic without touching `window` or `document`, so that it can
 * be driven without a browser (tests/live.test.ts).
 */

export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'stopped';

/** The close code the server sends when the user may no longer follow the page. */
export const CLOSE_FORBIDDEN = 4403;
export const BACKOFF_START_MS = 500;
export const BACKOFF_MAX_MS = 15_000;

export const LIVE_LABELS: Record<LiveState, string> = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  stopped: 'Not live: reload the page',
};

/**
 * Return the wait before reconnect attempt `attempt` (0 for the first): twice as long each time
 * up to a cap, drawn from the upper half so that many tabs dropped at once do not return at once.
 */
export function backoffDelay(attempt: number, random: number): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** attempt);
  return base / 2 + random * (base / 2);
}

/** Return the ws:// or wss:// (as the page) URL for `path` on the page's host. */
export function socketUrl(path: string, page: string = window.location.href): string {
  const url = new URL(path, page);
  url.protocol = new URL(page).protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

/** An open socket, as LiveSocket uses it. */
export interface Connection {
  close(code?: number): void;
}

/** Open a socket to `url` and report its messages' data and its close code. */
export type OpenSocket = (
  url: string,
  handlers: { message(data: unknown): void; close(code: number): void },
) => Connection;

export interface Clock {
  setTimeout(callback: () => void, ms: number): number;
  clearTimeout(handle: number): void;
}

export interface LiveSocketOptions<T> {
  /** Return what the page draws from a message (a parsed JSON object), or null to ignore it. */
  read(message: Record<string, unknown>): T | null;
  /** Draw an accepted message. */
  onMessage(payload: T): void;
  onState(state: LiveState): void;
  /** Defaults to the browser's WebSocket. */
  open?: OpenSocket;
  /** Defaults to the window's timers. */
  clock?: Clock;
  /** Defaults to Math.random. */
  random?: () => number;
}

const browserSocket: OpenSocket = (url, handlers) => {
  const ws = new WebSocket(url);
  ws.addEventListener('message', (event) => handlers.message(event.data));
  ws.addEventListener('close', (event) => handlers.close(event.code));
  return ws;
};

/** One live connection: reconnects after a drop until it is stopped or forbidden. */
export class LiveSocket<T> {
  private socket: Connection | null = null;
  private attempt = 0;
  private timer: number | undefined;
  private stopped = false;
  private readonly open: OpenSocket;
  private readonly clock: Clock;
  private readonly random: () => number;

  constructor(
    private readonly url: string,
    private readonly options: LiveSocketOptions<T>,
  ) {
    this.open = options.open ?? browserSocket;
    this.clock = options.clock ?? {
      setTimeout: (callback, ms) => window.setTimeout(callback, ms),
      clearTimeout: (handle) => window.clearTimeout(handle),
    };
    this.random = options.random ?? Math.random;
  }

  start(): void {
    this.connect();
  }

  /** Skip the rest of a backoff wait: the tab or the network came back. */
  reconnectNow(): void {
    if (this.stopped || this.socket || this.timer === undefined) return;
    this.clock.clearTimeout(this.timer);
    this.attempt = 0;
    this.connect();
  }

  /** Close the socket for good (the page is going away). */
  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000);
  }

  private connect(): void {
    this.timer = undefined;
    if (this.stopped) return;
    let socket: Connection;
    try {
      socket = this.open(this.url, {
        message: (data) => this.receive(data),
        close: (code) => {
          if (this.socket !== socket) return;
          this.socket = null;
          if (code === CLOSE_FORBIDDEN) {
            this.stopped = true;
            this.options.onState('stopped');
            return;
          }
          this.retry();
        },
      });
    } catch {
      this.retry();
      return;
    }
    this.socket = socket;
  }

  private retry(): void {
    this.options.onState('reconnecting');
    const delay = backoffDelay(this.attempt, this.random());
    this.attempt += 1;
    this.timer = this.clock.setTimeout(() => this.connect(), delay);
  }

  private receive(raw: unknown): void {
    let data: unknown;
    try {
      data = JSON.parse(String(raw));
    } catch {
      return;
    }
    if (!data || typeof data !== 'object') return;
    const payload = this.options.read(data as Record<string, unknown>);
    if (payload === null) return;
    this.attempt = 0;
    this.options.onState('live');
    this.options.onMessage(payload);
  }
}

/** Show `state` on a live-status indicator (its `.live-label`, or itself without one). */
export function showLiveState(indicator: HTMLElement | null, state: LiveState): void {
  if (!indicator) return;
  indicator.dataset.state = state;
  const label = indicator.querySelector('.live-label') ?? indicator;
  label.textContent = LIVE_LABELS[state];
}

/**
 * Open the page's live socket at `path` and keep it open until the page goes away, showing its
 * state on `indicator`. Return null where the browser has no WebSocket.
 */
export function openLiveSocket<T>(
  path: string,
  options: Pick<LiveSocketOptions<T>, 'read' | 'onMessage'> & { indicator: HTMLElement | null },
): LiveSocket<T> | null {
  if (typeof WebSocket === 'undefined') return null;
  const live = new LiveSocket(socketUrl(path), {
    read: options.read,
    onMessage: options.onMessage,
    onState: (state) => showLiveState(options.indicator, state),
  });
  window.addEventListener('online', () => live.reconnectNow());
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') live.reconnectNow();
  });
  window.addEventListener('pagehide', (event) => {
    if (event.persisted) return; // kept in the back/forward cache: the close event reconnects
    live.stop();
  });
  live.start();
  return live;
}
