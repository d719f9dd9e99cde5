/**
 * A training run's live page (templates/training/run_detail.html).
 *
 * Draws the state embedded in the page (`#run-page-data`: the run, its metric rows, its log),
 * then opens the run's websocket and applies each `{"type": "snapshot" | "update", run, metrics,
 * log}` message: the progress bar, the loss and accuracy charts (Chart.js, bundled) and the log
 * change without a reload. Cancel and resume go through the HTTP API. Reconnects with capped,
 * jittered exponential backoff; a 4403 close (not allowed any more) stops and asks for a reload.
 *
 * Log lines and errors are inserted as text, never as HTML.
 */
import {
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
  type ChartDataset,
} from 'chart.js';
import './styles/run.css';

Chart.register(LineController, LineElement, PointElement, LinearScale, Legend, Tooltip);

interface Run {
  id: number;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  step: number;
  total_steps: number;
  progress: number;
  error: string;
  cancel_requested: boolean;
  summary: { metrics?: Record<string, number>; counts?: Record<string, number> };
  artifacts: Record<string, string | null>;
  heartbeat_at: string | null;
}

interface MetricRow {
  id: number;
  step: number;
  split: 'train' | 'eval';
  values: Record<string, number>;
}

interface LogLine {
  id: number;
  at: string;
  level: 'info' | 'warning' | 'error';
  message: string;
}

interface State {
  run: Run;
  metrics: MetricRow[];
  log: LogLine[];
}

interface PageData {
  runId: number;
  liveUrl: string;
  canManage: boolean;
  csrfToken: string;
  cancelUrl: string;
  resumeUrl: string;
  initial: State;
}

type Live = 'connecting' | 'live' | 'reconnecting' | 'stopped';

const CLOSE_FORBIDDEN = 4403;
const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 15_000;
const STATUS_LABELS: Record<Run['status'], string> = {
  queued: 'Queued',
  running: 'Running',
  succeeded: 'Succeeded',
  failed: 'Failed',
  cancelled: 'Cancelled',
};
const STATUS_BADGES: Record<Run['status'], string> = {
  queued: 'badge-draft',
  running: 'badge-warning',
  succeeded: 'badge-success',
  failed: 'badge-danger',
  cancelled: 'badge-closed',
};
const LIVE_LABELS: Record<Live, string> = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  stopped: 'Not live: reload the page',
};
const FINAL_METRICS: [string, string, (v: number) => string][] = [
  ['eval_accuracy', 'Held-out accuracy', (v) => v.toFixed(4)],
  ['eval_loss', 'Held-out loss', (v) => v.toFixed(4)],
  ['eval_margin', 'Held-out mean margin', (v) => v.toFixed(4)],
  ['train_loss', 'Training loss (mean)', (v) => v.toFixed(4)],
];

/** The two series a chart draws: a metric of the training steps and its held-out twin. */
const CHARTS: Record<string, { train: string; eval: string; min?: number; max?: number }> = {
  loss: { train: 'loss', eval: 'eval_loss', min: 0 },
  accuracy: { train: 'accuracy', eval: 'eval_accuracy', min: 0, max: 1 },
};

function socketUrl(path: string): string {
  const url = new URL(path, window.location.href);
  url.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

class RunPage {
  private run: Run;
  private readonly metrics = new Map<string, MetricRow>(); // "split:step" -> row (a resumed run re-logs steps)
  private readonly logIds = new Set<number>();
  private readonly charts = new Map<string, Chart<'line', { x: number; y: number }[]>>();

  constructor(
    private readonly root: HTMLElement,
    private readonly data: PageData,
  ) {
    this.run = data.initial.run;
    for (const canvas of root.querySelectorAll<HTMLCanvasElement>('canvas[data-chart]')) {
      const name = canvas.dataset.chart ?? '';
      if (CHARTS[name]) this.charts.set(name, this.makeChart(canvas, name));
    }
    for (const [action, url] of [
      ['cancel', data.cancelUrl],
      ['resume', data.resumeUrl],
    ] as const) {
      this.button(action)?.addEventListener('click', () => void this.act(action, url));
    }
    this.apply(data.initial);
  }

  apply(state: State): void {
    this.run = state.run;
    for (const row of state.metrics) this.metrics.set(`${row.split}:${row.step}`, row);
    this.renderRun();
    if (state.metrics.length) this.renderCharts();
    this.appendLog(state.log);
  }

  private el<T extends HTMLElement = HTMLElement>(testid: string): T | null {
    return this.root.querySelector<T>(`[data-testid="${testid}"]`);
  }

  private button(action: string): HTMLButtonElement | null {
    return this.root.querySelector<HTMLButtonElement>(`button[data-action="${action}"]`);
  }

  private renderRun(): void {
    const run = this.run;
    const badge = this.el('run-status');
    if (badge) {
      badge.textContent = STATUS_LABELS[run.status] ?? run.status;
      badge.className = `badge ${STATUS_BADGES[run.status] ?? ''}`;
    }
    const bar = this.el('progress-bar');
    const share = run.total_steps ? Math.min(1, run.step / run.total_steps) : 0;
    if (bar) {
      bar.setAttribute('aria-valuenow', String(run.step));
      bar.setAttribute('aria-valuemax', String(run.total_steps));
      bar.dataset.progress = share.toFixed(4);
      const fill = bar.querySelector<HTMLElement>('.run-progress-fill');
      if (fill) fill.style.width = `${(share * 100).toFixed(1)}%`;
      bar.classList.toggle('is-active', run.status === 'running');
    }
    const text = this.el('progress-text');
    if (text) text.textContent = `Step ${run.step} of ${run.total_steps || '?'}`;
    const detail = this.el('progress-detail');
    if (detail) {
      const parts = [run.total_steps ? `${Math.round(share * 100)}%` : ''];
      if (run.cancel_requested && run.status === 'running') parts.push('stopping after this step…');
      detail.textContent = parts.filter(Boolean).join(' · ');
    }
    const error = this.el('run-error');
    if (error) {
      error.textContent = run.error;
      error.hidden = !run.error;
    }
    const cancel = this.button('cancel');
    if (cancel) {
      cancel.hidden = !(run.status === 'queued' || run.status === 'running');
      cancel.disabled = run.cancel_requested;
    }
    const resume = this.button('resume');
    if (resume) resume.hidden = !(run.status === 'failed' || run.status === 'cancelled');
    this.renderResult();
  }

  private renderResult(): void {
    const section = this.el('final-metrics');
    const list = section?.querySelector('dl');
    if (!section || !list) return;
    section.hidden = this.run.status !== 'succeeded';
    if (section.hidden) return;
    const metrics = this.run.summary.metrics ?? {};
    const facts: [string, string][] = [];
    for (const [key, label, format] of FINAL_METRICS) {
      if (typeof metrics[key] === 'number') facts.push([label, format(metrics[key])]);
    }
    const counts = this.run.summary.counts;
    if (counts) facts.push(['Pairs', `${counts.train_pairs ?? '?'} trained on, ${counts.eval_pairs ?? '?'} held out`]);
    if (this.run.artifacts.model) facts.push(['Model', this.run.artifacts.model]);
    list.replaceChildren(
      ...facts.flatMap(([term, value]) => {
        const dt = document.createElement('dt');
        dt.textContent = term;
        const dd = document.createElement('dd');
        dd.textContent = value;
        return [dt, dd];
      }),
    );
  }

  private makeChart(canvas: HTMLCanvasElement, name: string): Chart<'line', { x: number; y: number }[]> {
    const spec = CHARTS[name];
    const series = (label: string, color: string, dashed: boolean): ChartDataset<'line', { x: number; y: number }[]> => ({
      label,
      data: [],
      borderColor: color,
      backgroundColor: color,
      borderWidth: 2,
      borderDash: dashed ? [6, 4] : [],
      pointRadius: dashed ? 3 : 0,
      pointHoverRadius: 4,
      tension: 0.15,
    });
    return new Chart<'line', { x: number; y: number }[]>(canvas, {
      type: 'line',
      data: { datasets: [series('Training', '#3b5bdb', false), series('Held out', '#c77700', true)] },
      options: {
        maintainAspectRatio: false,
        animation: false,
        parsing: false,
        normalized: true,
        interaction: { mode: 'nearest', intersect: false },
        scales: {
          x: { type: 'linear', title: { display: true, text: 'step' }, ticks: { precision: 0 }, min: 0 },
          y: { type: 'linear', suggestedMin: spec.min, suggestedMax: spec.max },
        },
        plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
      },
    });
  }

  private renderCharts(): void {
    const rows = [...this.metrics.values()].sort((a, b) => a.step - b.step);
    for (const [name, chart] of this.charts) {
      const spec = CHARTS[name];
      const points = (split: MetricRow['split'], key: string) =>
        rows
          .filter((r) => r.split === split && typeof r.values[key] === 'number' && Number.isFinite(r.values[key]))
          .map((r) => ({ x: r.step, y: r.values[key] }));
      chart.data.datasets[0].data = points('train', spec.train);
      chart.data.datasets[1].data = points('eval', spec.eval);
      const x = chart.options.scales?.x;
      if (x) x.max = this.run.total_steps || undefined;
      chart.update('none');
      chart.canvas.dataset.points = String(chart.data.datasets.reduce((n, d) => n + d.data.length, 0));
    }
  }

  private appendLog(lines: LogLine[]): void {
    const list = this.el('run-log');
    if (!list) return;
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    for (const line of lines) {
      if (this.logIds.has(line.id)) continue;
      this.logIds.add(line.id);
      const item = document.createElement('li');
      item.className = `run-log-${line.level}`;
      const time = document.createElement('time');
      time.dateTime = line.at;
      time.textContent = new Date(line.at).toLocaleTimeString();
      item.append(time, ' ', line.message); // text nodes: a message is never parsed as HTML
      list.append(item);
    }
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  private async act(action: 'cancel' | 'resume', url: string): Promise<void> {
    const button = this.button(action);
    const message = button?.dataset.confirm;
    if (message && !window.confirm(message)) return;
    const errorBox = this.el('action-error');
    if (button) button.disabled = true;
    try {
      const response = await fetch(url, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'X-CSRFToken': this.data.csrfToken, Accept: 'application/json' },
      });
      const body = (await response.json().catch(() => ({}))) as Partial<Run> & { message?: string };
      if (!response.ok) throw new Error(body.message || `The server answered ${response.status}.`);
      if (errorBox) errorBox.hidden = true;
      this.run = { ...this.run, ...(body as Run) };
      this.renderRun();
    } catch (err) {
      if (errorBox) {
        errorBox.textContent = `Could not ${action} the run: ${err instanceof Error ? err.message : String(err)}`;
        errorBox.hidden = false;
      }
    } finally {
      if (button) button.disabled = action === 'cancel' && this.run.cancel_requested;
    }
  }
}

function startLive(page: RunPage, root: HTMLElement, url: string): void {
  const indicator = root.querySelector<HTMLElement>('[data-testid=live-status]');
  let socket: WebSocket | null = null;
  let attempt = 0;
  let timer: number | undefined;
  let stopped = false;

  function setLive(state: Live): void {
    if (!indicator) return;
    indicator.dataset.state = state;
    const label = indicator.querySelector('.live-label') ?? indicator;
    label.textContent = LIVE_LABELS[state];
  }

  function onMessage(event: MessageEvent): void {
    let data: unknown;
    try {
      data = JSON.parse(String(event.data));
    } catch {
      return;
    }
    const message = data as Partial<State> & { type?: unknown };
    if ((message.type !== 'snapshot' && message.type !== 'update') || !message.run) return;
    attempt = 0;
    setLive('live');
    page.apply({ run: message.run, metrics: message.metrics ?? [], log: message.log ?? [] });
  }

  function retry(): void {
    setLive('reconnecting');
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
        setLive('stopped');
        return;
      }
      retry();
    });
  }

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
    if (event.persisted) return;
    stopped = true;
    if (timer !== undefined) window.clearTimeout(timer);
    const ws = socket;
    socket = null;
    ws?.close(1000);
  });
  connect();
}

function main(): void {
  const root = document.getElementById('run-page');
  const script = document.getElementById('run-page-data');
  if (!root || !script?.textContent) return;
  const data = JSON.parse(script.textContent) as PageData;
  const page = new RunPage(root, data);
  if (typeof WebSocket !== 'undefined') startLive(page, root, socketUrl(data.liveUrl));
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', main, { once: true });
} else {
  main();
}
