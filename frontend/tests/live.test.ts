/**
 * Unit tests for src/live.ts: when a live page's socket reconnects, how long it waits, and when it
 * gives up. Sockets and timers are the test's own (the browser tests drive a real socket), so
 * every reconnect and every wait can be looked at.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import {
  BACKOFF_MAX_MS,
  BACKOFF_START_MS,
  CLOSE_FORBIDDEN,
  LiveSocket,
  backoffDelay,
  socketUrl,
  type Clock,
  type LiveState,
  type OpenSocket,
} from '../src/live.js';

interface Opened {
  url: string;
  message(data: unknown): void;
  close(code: number): void;
  closedWith: number | undefined | null; // null: still open
}

/** A LiveSocket on sockets and timers the test controls, recording what it does. */
function harness(options: { random?: number; failOpens?: number } = {}) {
  const sockets: Opened[] = [];
  const timers = new Map<number, { callback: () => void; ms: number }>();
  const states: LiveState[] = [];
  const drawn: string[] = [];
  let nextTimer = 1;
  let failOpens = options.failOpens ?? 0;
  const open: OpenSocket = (url, handlers) => {
    if (failOpens > 0) {
      failOpens -= 1;
      throw new SyntaxError('bad URL');
    }
    const socket: Opened = { url, ...handlers, closedWith: null };
    sockets.push(socket);
    return {
      close(code) {
        socket.closedWith = code;
      },
    };
  };
  const clock: Clock = {
    setTimeout(callback, ms) {
      timers.set(nextTimer, { callback, ms });
      return nextTimer++;
    },
    clearTimeout(handle) {
      timers.delete(handle);
    },
  };
  const live = new LiveSocket<string>('ws://example.test/ws/campaigns/1/', {
    read: (message) => (message.type === 'progress' && typeof message.text === 'string' ? message.text : null),
    onMessage: (text) => drawn.push(`${states.at(-1)}:${text}`),
    onState: (state) => states.push(state),
    open,
    clock,
    random: () => options.random ?? 0,
  });
  /** Fire the one pending timer and return the wait it was set for. */
  const elapse = (): number => {
    assert.equal(timers.size, 1, 'one reconnect is waiting');
    const [[handle, { callback, ms }]] = timers;
    timers.delete(handle);
    callback();
    return ms;
  };
  const last = (): Opened => sockets[sockets.length - 1];
  return { live, sockets, timers, states, drawn, elapse, last };
}

test('the wait doubles from 0.25-0.5 s up to a cap of 7.5-15 s', () => {
  assert.equal(backoffDelay(0, 0), BACKOFF_START_MS / 2);
  assert.equal(backoffDelay(0, 1), BACKOFF_START_MS);
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6].map((attempt) => backoffDelay(attempt, 0)),
    [250, 500, 1000, 2000, 4000, 7500, 7500],
  );
  assert.equal(backoffDelay(40, 0.999), BACKOFF_MAX_MS / 2 + 0.999 * (BACKOFF_MAX_MS / 2));
  assert.equal(backoffDelay(3, 0.5), 3000);
});

test('the socket URL follows the page: ws on http, wss on https, same host', () => {
  assert.equal(socketUrl('/ws/campaigns/3/', 'http://localhost:8000/campaigns/3/'), 'ws://localhost:8000/ws/campaigns/3/');
  assert.equal(socketUrl('/ws/runs/7/', 'https://arbiter.example/training/runs/7/'), 'wss://arbiter.example/ws/runs/7/');
});

test('a dropped socket reconnects after a growing wait; an accepted message resets it', () => {
  const h = harness();
  h.live.start();
  assert.equal(h.sockets.length, 1);
  assert.equal(h.last().url, 'ws://example.test/ws/campaigns/1/');

  h.last().message(JSON.stringify({ type: 'progress', text: 'first' }));
  assert.deepEqual(h.states, ['live']);
  assert.deepEqual(h.drawn, ['live:first'], 'the indicator says Live before the page draws');

  const waits: number[] = [];
  for (let drop = 0; drop < 4; drop++) {
    h.last().close(1006);
    assert.equal(h.states.at(-1), 'reconnecting');
    assert.equal(h.sockets.length, drop + 1, 'no new socket before the wait is over');
    waits.push(h.elapse());
    assert.equal(h.sockets.length, drop + 2);
  }
  assert.deepEqual(waits, [250, 500, 1000, 2000]);

  h.last().message(JSON.stringify({ type: 'progress', text: 'back' }));
  assert.equal(h.states.at(-1), 'live');
  h.last().close(1006);
  assert.equal(h.elapse(), 250, 'a message starts the backoff over');
});

test('messages the page does not accept change nothing', () => {
  const h = harness();
  h.live.start();
  h.last().close(1006);
  for (const data of ['not json', 'null', '42', '"text"', JSON.stringify({ type: 'other', text: 'x' }), '{"type": "progress"}']) {
    h.last().message(data);
  }
  h.elapse();
  h.last().close(1006);
  assert.deepEqual(h.states, ['reconnecting', 'reconnecting']);
  assert.deepEqual(h.drawn, []);
  assert.equal(h.elapse(), 500, 'ignored messages do not reset the backoff');
});

test('a 4403 close stops for good and asks for a reload', () => {
  const h = harness();
  h.live.start();
  h.last().close(CLOSE_FORBIDDEN);
  assert.deepEqual(h.states, ['stopped']);
  assert.equal(h.timers.size, 0);
  h.live.reconnectNow();
  assert.equal(h.sockets.length, 1, 'the tab coming back does not reopen it');
});

test('reconnectNow skips the wait, and only while waiting', () => {
  const h = harness({ random: 0.5 });
  h.live.start();
  h.live.reconnectNow();
  assert.equal(h.sockets.length, 1, 'an open socket is kept');

  h.last().close(1006);
  h.elapse();
  h.last().close(1006);
  assert.equal(h.timers.size, 1);
  h.live.reconnectNow();
  assert.equal(h.timers.size, 0, 'the pending wait is cancelled');
  assert.equal(h.sockets.length, 3);
  h.last().close(1006);
  assert.equal(h.elapse(), 375, 'and the backoff starts over');
});

test('a socket that cannot be opened is retried like a dropped one', () => {
  const h = harness({ failOpens: 2 });
  h.live.start();
  assert.deepEqual(h.states, ['reconnecting']);
  assert.equal(h.elapse(), 250);
  assert.equal(h.elapse(), 500);
  assert.equal(h.sockets.length, 1);
});

test('stop closes the socket normally and nothing reconnects', () => {
  const h = harness();
  h.live.start();
  const socket = h.last();
  h.live.stop();
  assert.equal(socket.closedWith, 1000);
  socket.close(1000); // the browser's close event for it
  assert.deepEqual(h.states, []);
  assert.equal(h.timers.size, 0);

  const waiting = harness();
  waiting.live.start();
  waiting.last().close(1006);
  waiting.live.stop();
  assert.equal(waiting.timers.size, 0, 'a pending reconnect is cancelled');
});

test('a close from a socket already replaced is ignored', () => {
  const h = harness();
  h.live.start();
  const first = h.last();
  first.close(1006);
  h.elapse();
  first.close(1006); // late duplicate event
  assert.equal(h.timers.size, 0);
  assert.deepEqual(h.states, ['reconnecting']);
});
