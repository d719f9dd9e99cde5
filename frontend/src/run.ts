/**
 * A training run's live page (templates/training/run_detail.html).
 *
 * Draws the state embedded in the page (`#run-page-data`: the run, its metric rows, its log),
 * then opens the run's websocket and applies each `{"type": "snapshot" | "update", run, metrics,
 * log}` message: the progress bar, the charts (Chart.js, bundled), the PPO sample table and the
 * log change without a reload. Which charts and final figures a run shows depends on its kind
 * (the table in run_view.ts). Cancel and resume go through the HTTP API. The socket, its
 * reconnects and the "Live" indicator are live.ts's.
 *
 * Log lines, errors and sampled model outputs are inserted as text, never as HTML.
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
import { openLiveSocket } from './live';
import {
  finalFacts,
  isWarning,
  kindView,
  sampleTable,
  seriesPoints,
  type ChartSpec,
  type MetricRow,
  type RunSummary,
} from './run_view';
import './styles/run.css';

Chart.register(LineController, LineElement, PointElement, LinearScale, Legend, Tooltip);

type LineChart = Chart<'line', { x: number; y: number }[]>;

interface Run {
  id: number;
  kind: string;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  step: number;
  total_steps: number;
  progress: number;
  error: string;
  cancel_requested: boolean;
  summary: RunSummary;
  artifacts: Record<string, string | null>;
  heartbeat_at: string | null;
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
const SERIES_COLORS = ['#3b5bdb', '#c77700', '#2b8a3e', '#ae3ec9'];
const ENDED: Run['status'][] = ['succeeded', 'failed', 'cancelled'];

class RunPage {
  private run: Run;
  private readonly metrics = new Map<string, MetricRow>(); // "split:step" -> row (a resumed run re-logs steps)
  private readonly logIds = new Set<number>();
  private readonly charts = new Map<string, { spec: ChartSpec; chart: LineChart; card: HTMLElement }>();
  private warnings = 0;

  constructor(
    private readonly root: HTMLElement,
    private readonly data: PageData,
  ) {
    this.run = data.initial.run;
    const grid = this.el('run-charts');
    for (const spec of grid ? kindView(this.run.kind).charts : []) {
      const { card, canvas } = this.chartCard(spec);
      grid?.append(card);
      this.charts.set(spec.id, { spec, chart: this.makeChart(canvas, spec), card });
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
    this.renderCharts();
    this.renderSamples();
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
    const facts = finalFacts(this.run.kind, this.run.summary ?? {}, this.run.artifacts.model);
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

  /** Return a chart's card: a heading and a canvas named for screen readers. */
  private chartCard(spec: ChartSpec): { card: HTMLElement; canvas: HTMLCanvasElement } {
    const card = document.createElement('section');
    card.className = 'card';
    const heading = document.createElement('h2');
    heading.id = `chart-${spec.id}-heading`;
    heading.textContent = spec.title;
    card.setAttribute('aria-labelledby', heading.id);
    const box = document.createElement('div');
    box.className = 'run-chart';
    const canvas = document.createElement('canvas');
    canvas.dataset.chart = spec.id;
    canvas.dataset.testid = `${spec.id}-chart`;
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', spec.description);
    box.append(canvas);
    card.append(heading, box);
    return { card, canvas };
  }

  private makeChart(canvas: HTMLCanvasElement, spec: ChartSpec): LineChart {
    const datasets = spec.series.map((series, i): ChartDataset<'line', { x: number; y: number }[]> => {
      const color = SERIES_COLORS[i % SERIES_COLORS.length];
      const dashed = series.split === 'eval';
      return {
        label: series.label,
        data: [],
        borderColor: color,
        backgroundColor: color,
        borderWidth: 2,
        borderDash: dashed ? [6, 4] : [],
        pointRadius: dashed ? 3 : 0,
        pointHoverRadius: 4,
        tension: 0.15,
        yAxisID: series.right ? 'y1' : 'y',
      };
    });
    const right = spec.series.some((series) => series.right);
    return new Chart<'line', { x: number; y: number }[]>(canvas, {
      type: 'line',
      data: { datasets },
      options: {
        maintainAspectRatio: false,
        animation: false,
        parsing: false,
        normalized: true,
        interaction: { mode: 'nearest', intersect: false },
        scales: {
          x: { type: 'linear', title: { display: true, text: 'step' }, ticks: { precision: 0 }, min: 0 },
          y: { type: 'linear', suggestedMin: spec.min, suggestedMax: spec.max },
          ...(right
            ? {
                y1: {
                  type: 'linear' as const,
                  position: 'right' as const,
                  grid: { drawOnChartArea: false },
                  title: { display: !!spec.rightTitle, text: spec.rightTitle ?? '' },
                },
              }
            : {}),
        },
        plugins: {
          // A series whose metric the run does not log is left out of the legend.
          legend: {
            position: 'bottom',
            labels: { boxWidth: 12, filter: (item, data) => data.datasets[item.datasetIndex ?? 0].data.length > 0 },
          },
        },
      },
    });
  }

  private renderCharts(): void {
    const rows = [...this.metrics.values()];
    const ended = ENDED.includes(this.run.status);
    for (const { spec, chart, card } of this.charts.values()) {
      spec.series.forEach((series, i) => {
        chart.data.datasets[i].data = seriesPoints(rows, series);
      });
      const x = chart.options.scales?.x;
      if (x) x.max = this.run.total_steps || undefined;
      chart.update('none');
      const points = chart.data.datasets.reduce((n, d) => n + d.data.length, 0);
      chart.canvas.dataset.points = String(points);
      // A chart of metrics this run never logged says nothing once the run has ended.
      card.hidden = ended && points === 0;
    }
  }

  private renderSamples(): void {
    const section = this.el('samples');
    const body = section?.querySelector('tbody');
    if (!section || !body) return;
    const table = sampleTable(this.run.summary ?? {});
    section.hidden = table === null;
    if (table === null) return;
    const caption = this.el('samples-step');
    if (caption) caption.textContent = table.step !== null ? `Sampled at step ${table.step}.` : '';
    body.replaceChildren(
      ...table.rows.map((row) => {
        const tr = document.createElement('tr');
        const prompt = document.createElement('td');
        prompt.className = 'run-sample-text';
        prompt.textContent = row.prompt; // model and user text: never parsed as HTML
        const response = document.createElement('td');
        response.className = 'run-sample-text';
        response.textContent = row.response;
        const score = document.createElement('td');
        score.className = 'text-right nowrap';
        score.textContent = row.score === null ? '—' : row.score.toFixed(3);
        tr.append(prompt, response, score);
        return tr;
      }),
    );
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
      if (isWarning(line)) {
        item.classList.add('run-log-warning');
        item.dataset.warning = '';
        this.warnings += 1;
      }
      const time = document.createElement('time');
      time.dateTime = line.at;
      time.textContent = new Date(line.at).toLocaleTimeString();
      item.append(time, ' ', line.message); // text nodes: a message is never parsed as HTML
      list.append(item);
    }
    if (atBottom) list.scrollTop = list.scrollHeight;
    const count = this.el('warning-count');
    if (count) {
      count.hidden = this.warnings === 0;
      count.textContent = `${this.warnings} warning${this.warnings === 1 ? '' : 's'}`;
    }
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

function main(): void {
  const root = document.getElementById('run-page');
  const script = document.getElementById('run-page-data');
  if (!root || !script?.textContent) return;
  const data = JSON.parse(script.textContent) as PageData;
  const page = new RunPage(root, data);
  openLiveSocket(data.liveUrl, {
    indicator: root.querySelector<HTMLElement>('[data-testid=live-status]'),
    read: (message): State | null =>
      (message.type === 'snapshot' || message.type === 'update') && message.run
        ? {
            run: message.run as Run,
            metrics: (message.metrics as MetricRow[] | undefined) ?? [],
            log: (message.log as LogLine[] | undefined) ?? [],
          }
        : null,
    onMessage: (state) => page.apply(state),
  });
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', main, { once: true });
} else {
  main();
}
