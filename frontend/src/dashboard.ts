/**
 * The campaign dashboard (templates/annotation/campaign_dashboard.html).
 *
 * Draws the payload embedded in the page (`#dashboard-data`) as Chart.js charts, figures and
 * tables, then opens the websocket named by `data-live-url` and redraws on each
 * `{"type": "dashboard", "dashboard": {...}}` it receives: no reload. The socket, its reconnects
 * and the "Live" indicator are live.ts's.
 *
 * Text alternatives: every canvas is `role="img"` with a one-line label and a summary paragraph
 * (aria-describedby) rewritten on each update; the annotator and leaderboard tables hold the
 * numbers the charts draw. Usernames and model names only ever go in as text.
 */
import { COLORS, intervalChart, makeChart, referenceLine, setChart, type AnyChart } from './charts';
import { flash, h } from './dom';
import { openLiveSocket } from './live';

interface Annotator {
  user_id: number;
  username: string;
  role: string | null;
  judged: number;
  cap: number | null;
  paused: boolean;
  excluded: boolean;
  median_seconds: number | null;
  timed: number;
  gold: { correct: number; n: number; accuracy: number | null };
}

interface LeaderboardRow {
  model: string;
  score: number;
  ci_low: number;
  ci_high: number;
  rank: number;
  n: number;
}

interface Dashboard {
  campaign: { id: number; name: string; kind: string; status: string; overlap: number };
  generated_at: string;
  judgment_count: number;
  progress: {
    items: number;
    items_complete: number;
    judgments: number;
    wanted: number;
    leased: number;
    per_minute: number;
    share: number | null;
  };
  throughput: { bucket_seconds: number; window_minutes: number; buckets: { t: string; count: number }[]; total: number; peak: number };
  annotators: Annotator[];
  excluded: string[];
  time_per_item: { median_seconds: number | null; n: number };
  agreement: { method: string; label: string; value: number | null; items: number; judgments: number; annotators: number };
  position_bias: {
    rate: number | null;
    ci_low: number | null;
    ci_high: number | null;
    confidence: number;
    decisive: number;
    first_wins: number;
    ties: number;
    p_value: number | null;
  };
  leaderboard: { rows: LeaderboardRow[]; bootstrap_rounds: number; confidence: number; scale: string; prior: number; note: string };
  quality_as_of: { judgment_count: number; stale: boolean; refresh_in: number | null; compute_seconds: number };
}

const numberFormat = new Intl.NumberFormat();
const num = (v: number): string => numberFormat.format(v);
const pct = (v: number, digits = 0): string => `${(v * 100).toFixed(digits)}%`;
const plural = (n: number, word: string): string => `${num(n)} ${word}${n === 1 ? '' : 's'}`;

function minuteLabel(iso: string): string {
  return new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function annotatorLabel(a: Annotator): string {
  const marks = [a.paused ? 'paused' : '', a.excluded ? 'excluded' : ''].filter(Boolean);
  return marks.length ? `${a.username} (${marks.join(', ')})` : a.username;
}

function annotatorColor(a: Annotator): string {
  if (a.excluded) return COLORS.muted;
  if (a.paused) return COLORS.warning;
  return COLORS.primary;
}

/** The dashboard's charts, figures and tables under `root`, redrawn from each payload. */
class DashboardView {
  private readonly charts: Record<string, AnyChart> = {};
  private latest: Dashboard | null = null;

  constructor(private readonly root: HTMLElement) {
    const canvas = (name: string): HTMLCanvasElement | null =>
      root.querySelector<HTMLCanvasElement>(`canvas[data-chart="${name}"]`);
    const latest = (): Dashboard | null => this.latest;

    const progress = canvas('progress');
    if (progress) {
      this.charts.progress = makeChart(progress, {
        type: 'bar',
        data: {
          labels: [],
          datasets: [
            { label: 'Done', data: [], backgroundColor: COLORS.primary, borderRadius: 4 },
            { label: 'Remaining', data: [], backgroundColor: COLORS.mutedSoft, borderRadius: 4 },
          ],
        },
        options: {
          indexAxis: 'y',
          scales: {
            x: { stacked: true, min: 0, max: 100, ticks: { callback: (v) => `${v}%` } },
            y: { stacked: true, grid: { display: false } },
          },
          plugins: {
            legend: { position: 'bottom', labels: { boxWidth: 12 } },
            tooltip: {
              callbacks: {
                label: (item) => {
                  const d = latest();
                  if (!d) return '';
                  const [done, total] =
                    item.dataIndex === 0 ? [d.progress.judgments, d.progress.wanted] : [d.progress.items_complete, d.progress.items];
                  const value = item.datasetIndex === 0 ? done : total - done;
                  return `${item.dataset.label}: ${num(value)} of ${num(total)}`;
                },
              },
            },
          },
        },
      });
    }

    const throughput = canvas('throughput');
    if (throughput) {
      this.charts.throughput = makeChart(throughput, {
        type: 'line',
        data: {
          labels: [],
          datasets: [
            {
              label: 'Judgments per minute',
              data: [],
              borderColor: COLORS.primary,
              backgroundColor: COLORS.primaryFill,
              fill: true,
              tension: 0.25,
              pointRadius: 0,
              pointHitRadius: 6,
              borderWidth: 2,
            },
          ],
        },
        options: {
          interaction: { mode: 'index', intersect: false },
          scales: {
            x: { ticks: { maxTicksLimit: 8, maxRotation: 0 }, grid: { display: false } },
            y: { beginAtZero: true, ticks: { precision: 0 } },
          },
          plugins: { legend: { display: false } },
        },
      });
    }

    const annotators = canvas('annotators');
    if (annotators) {
      this.charts.annotators = makeChart(annotators, {
        type: 'bar',
        data: {
          labels: [],
          datasets: [
            { type: 'bar', label: 'Judged', data: [], backgroundColor: [], borderRadius: 4, order: 2 },
            {
              type: 'line',
              label: 'Cap',
              data: [],
              showLine: false,
              pointStyle: 'line',
              pointRadius: 14,
              pointBorderWidth: 3,
              pointBorderColor: COLORS.danger,
              order: 1,
            },
          ],
        },
        options: {
          scales: { y: { beginAtZero: true, ticks: { precision: 0 } }, x: { grid: { display: false } } },
          plugins: {
            legend: {
              position: 'bottom',
              labels: {
                boxWidth: 12,
                // "Cap" only when some member has one.
                filter: (item, data) => data.datasets[item.datasetIndex ?? 0]?.data.some((v) => v !== null) ?? true,
              },
            },
          },
        },
      });
    }

    const time = canvas('time');
    if (time) {
      this.charts.time = makeChart(time, {
        type: 'bar',
        data: {
          labels: [],
          datasets: [{ label: 'Median seconds per item', data: [], backgroundColor: [], borderRadius: 4 }],
        },
        options: {
          layout: { padding: { top: 16 } },
          scales: { y: { beginAtZero: true, title: { display: true, text: 'seconds' } }, x: { grid: { display: false } } },
          plugins: { legend: { display: false } },
        },
        plugins: [
          referenceLine(
            'overall-median',
            'y',
            () => latest()?.time_per_item.median_seconds ?? null,
            () => `overall median ${(latest()?.time_per_item.median_seconds ?? 0).toFixed(1)} s`,
          ),
        ],
      });
    }

    const gold = canvas('gold');
    if (gold) {
      this.charts.gold = makeChart(gold, {
        type: 'bar',
        data: { labels: [], datasets: [{ label: 'Gold accuracy', data: [], backgroundColor: [], borderRadius: 4 }] },
        options: {
          scales: {
            y: { min: 0, max: 100, ticks: { callback: (v) => `${v}%` } },
            x: { grid: { display: false } },
          },
          plugins: {
            legend: { display: false },
            tooltip: {
              callbacks: {
                label: (item) => {
                  const a = latest()?.annotators[item.dataIndex];
                  return a && a.gold.n ? `${a.gold.correct} of ${a.gold.n} gold checks right` : 'no gold checks yet';
                },
              },
            },
          },
        },
      });
    }

    const agreement = canvas('agreement');
    if (agreement) {
      this.charts.agreement = makeChart(agreement, {
        type: 'bar',
        data: { labels: [], datasets: [{ label: 'Krippendorff’s α', data: [], backgroundColor: COLORS.primary, borderRadius: 4, barPercentage: 0.6 }] },
        options: {
          indexAxis: 'y',
          scales: { x: { min: -1, max: 1 }, y: { grid: { display: false } } },
          plugins: { legend: { display: false } },
        },
        plugins: [referenceLine('chance', 'x', () => 0, () => 'chance')],
      });
    }

    const bias = canvas('bias');
    if (bias) {
      this.charts.bias = intervalChart(bias, {
        intervalLabel: '95% interval',
        pointLabel: 'First-shown win rate',
        min: 0,
        max: 1,
        percent: true,
        plugins: [referenceLine('no-bias', 'x', () => 0.5, () => 'no bias')],
      });
    }

    const leaderboard = canvas('leaderboard');
    if (leaderboard) {
      this.charts.leaderboard = intervalChart(leaderboard, { intervalLabel: '95% interval', pointLabel: 'Score' });
    }
  }

  render(d: Dashboard): void {
    this.latest = d;
    this.renderFigures(d);
    this.renderCharts(d);
    this.renderAnnotatorTable(d.annotators);
    this.renderLeaderboardTable(d.leaderboard.rows);
    this.root.dataset.judgmentCount = String(d.judgment_count);
  }

  private field(name: string, text: string): void {
    for (const el of this.root.querySelectorAll<HTMLElement>(`[data-field="${name}"], [data-stat="${name}"]`)) {
      if (el.textContent === text) continue;
      el.textContent = text;
      if (el.classList.contains('stat')) flash(el);
    }
  }

  private summary(name: string, label: string, text: string): void {
    const canvas = this.root.querySelector<HTMLCanvasElement>(`canvas[data-chart="${name}"]`);
    canvas?.setAttribute('aria-label', label);
    const el = this.root.querySelector<HTMLElement>(`[data-summary="${name}"]`);
    if (el && el.textContent !== text) el.textContent = text;
  }

  private renderFigures(d: Dashboard): void {
    const p = d.progress;
    this.field('judgments', `${num(p.judgments)} / ${num(p.wanted)}`);
    this.field('items', `${num(p.items_complete)} / ${num(p.items)}`);
    this.field('leased', num(p.leased));
    this.field('per_minute', num(p.per_minute));
    const median = d.time_per_item.median_seconds;
    this.field('median', median === null ? '—' : `${median.toFixed(1)} s`);
    const alpha = d.agreement.value;
    this.field('agreement', alpha === null ? '—' : alpha.toFixed(3));
    this.field('agreement-value', alpha === null ? '—' : alpha.toFixed(3));
    this.field('leaderboard-note', d.leaderboard.note);
    this.field('judgment-count', `${plural(d.judgment_count, 'judgment')} stored`);
    const q = d.quality_as_of;
    this.field(
      'quality-as-of',
      q.stale ? `Agreement, bias, leaderboard and times as of ${plural(q.judgment_count, 'judgment')}; updating…` : '',
    );
    const updated = this.root.querySelector<HTMLTimeElement>('[data-field="generated_at"]');
    if (updated) {
      updated.dateTime = d.generated_at;
      updated.textContent = new Date(d.generated_at).toLocaleTimeString();
    }
  }

  private renderCharts(d: Dashboard): void {
    const c = this.charts;
    const p = d.progress;
    const share = (done: number, total: number): number => (total ? Math.round((done / total) * 1000) / 10 : 0);
    if (c.progress) {
      const done = [share(p.judgments, p.wanted), share(p.items_complete, p.items)];
      setChart(c.progress, ['Judgments', 'Items complete'], [done, done.map((v) => Math.round((100 - v) * 10) / 10)]);
    }
    this.summary(
      'progress',
      `Progress: ${pct(p.wanted ? p.judgments / p.wanted : 0)} of judgments made`,
      `${num(p.judgments)} of ${num(p.wanted)} judgments made; ${num(p.items_complete)} of ${num(p.items)} items complete; ${num(p.leased)} leased now.`,
    );

    const t = d.throughput;
    if (c.throughput) setChart(c.throughput, t.buckets.map((b) => minuteLabel(b.t)), [t.buckets.map((b) => b.count)]);
    const minutes = t.buckets.length;
    const peakAt = t.buckets.find((b) => b.count === t.peak && t.peak > 0);
    this.summary(
      'throughput',
      `Throughput: ${plural(t.total, 'judgment')} in the last ${minutes} minutes`,
      `${plural(t.total, 'judgment')} in the last ${minutes} minutes` +
        (peakAt ? `; the busiest minute, ${minuteLabel(peakAt.t)}, had ${num(t.peak)}.` : '.'),
    );

    const annotators = d.annotators;
    const labels = annotators.map(annotatorLabel);
    const colors = annotators.map(annotatorColor);
    if (c.annotators) {
      setChart(c.annotators, labels, [annotators.map((a) => a.judged), annotators.map((a) => a.cap)], (chart) => {
        chart.data.datasets[0].backgroundColor = colors;
      });
    }
    const busiest = [...annotators].sort((a, b) => b.judged - a.judged)[0];
    this.summary(
      'annotators',
      `Judgments per annotator: ${plural(annotators.length, 'annotator')}`,
      annotators.length
        ? `${plural(annotators.length, 'annotator')}; most judgments: ${busiest.username} with ${num(busiest.judged)}.` +
            (d.excluded.length ? ` Excluded: ${d.excluded.join(', ')}.` : '')
        : 'No annotators yet.',
    );

    if (c.time) {
      setChart(c.time, labels, [annotators.map((a) => a.median_seconds)], (chart) => {
        chart.data.datasets[0].backgroundColor = colors;
      });
    }
    const median = d.time_per_item.median_seconds;
    this.summary(
      'time',
      `Time per item: median ${median === null ? 'not known yet' : `${median.toFixed(1)} seconds`}`,
      median === null
        ? 'No judgment has a recorded time yet.'
        : `Median ${median.toFixed(1)} s per item over ${plural(d.time_per_item.n, 'timed judgment')} of included members.`,
    );

    if (c.gold) {
      setChart(
        c.gold,
        annotators.map((a) => `${annotatorLabel(a)} (n=${a.gold.n})`),
        [annotators.map((a) => (a.gold.accuracy === null ? null : Math.round(a.gold.accuracy * 1000) / 10))],
        (chart) => {
          chart.data.datasets[0].backgroundColor = colors;
        },
      );
    }
    const checked = annotators.filter((a) => a.gold.n > 0);
    this.summary(
      'gold',
      `Gold accuracy: ${plural(checked.length, 'annotator')} checked`,
      checked.length
        ? checked.map((a) => `${a.username} ${pct(a.gold.accuracy ?? 0)} of ${a.gold.n}`).join('; ') + '.'
        : 'No gold checks answered yet.',
    );

    const ag = d.agreement;
    if (c.agreement) {
      setChart(c.agreement, ['α'], [[ag.value]], (chart) => {
        const x = chart.options.scales?.x;
        if (x) x.min = Math.min(-1, Math.floor(ag.value ?? 0));
        chart.data.datasets[0].backgroundColor = (ag.value ?? 0) < 0 ? COLORS.danger : COLORS.primary;
      });
    }
    this.summary(
      'agreement',
      `Agreement: ${ag.value === null ? 'not defined yet' : `α = ${ag.value.toFixed(3)}`}`,
      ag.value === null
        ? 'Agreement needs an item judged by two or more included annotators.'
        : `α = ${ag.value.toFixed(3)} over ${plural(ag.items, 'item')} judged by two or more of ${plural(ag.annotators, 'annotator')} (${plural(ag.judgments, 'judgment')}).`,
    );

    const b = d.position_bias;
    if (c.bias) {
      setChart(c.bias, ['Shown first'], [
        [b.ci_low === null || b.ci_high === null ? null : [b.ci_low, b.ci_high]],
        [b.rate],
      ]);
    }
    this.summary(
      'bias',
      `Position bias: ${b.rate === null ? 'no decisive judgments yet' : `first shown wins ${pct(b.rate, 1)}`}`,
      b.rate === null
        ? 'No decisive judgment with a known screen order yet.'
        : `The response shown first won ${num(b.first_wins)} of ${plural(b.decisive, 'decisive judgment')} (${pct(b.rate, 1)}; 95% interval ${pct(b.ci_low ?? 0, 1)} – ${pct(b.ci_high ?? 0, 1)}` +
            (b.p_value === null ? ')' : `; p = ${b.p_value.toFixed(3)})`) +
            `; ${plural(b.ties, 'tie')} not counted.`,
    );

    const rows = d.leaderboard.rows;
    if (c.leaderboard) {
      setChart(
        c.leaderboard,
        rows.map((r) => `${r.rank}. ${r.model}`),
        [rows.map((r) => [r.ci_low, r.ci_high]), rows.map((r) => r.score)],
      );
    }
    this.summary(
      'leaderboard',
      `Leaderboard: ${plural(rows.length, 'model')}`,
      rows.length
        ? rows.map((r) => `${r.rank}. ${r.model} ${r.score.toFixed(1)} (${r.ci_low.toFixed(1)} – ${r.ci_high.toFixed(1)})`).join('; ') + '.'
        : 'No comparisons between named models yet.',
    );
  }

  private renderAnnotatorTable(annotators: Annotator[]): void {
    const body = this.root.querySelector<HTMLElement>('[data-rows="annotators"]');
    if (!body) return;
    const rows = annotators.map((a) =>
      h(
        'tr',
        { 'data-testid': 'annotator-row', 'data-username': a.username, 'data-excluded': String(a.excluded) },
        h('td', { 'data-field': 'username' }, a.username),
        h(
          'td',
          { 'data-field': 'status' },
          a.paused ? h('span', { className: 'badge badge-warning' }, 'paused') : h('span', { className: 'badge badge-success' }, 'active'),
          a.excluded && h('span', { className: 'badge badge-danger' }, 'excluded'),
        ),
        h('td', { className: 'num', 'data-field': 'judged' }, num(a.judged)),
        h('td', { className: 'num', 'data-field': 'cap' }, a.cap === null ? '—' : num(a.cap)),
        h('td', { className: 'num', 'data-field': 'median' }, a.median_seconds === null ? '—' : a.median_seconds.toFixed(1)),
        h(
          'td',
          { className: 'num', 'data-field': 'gold' },
          a.gold.n ? `${pct(a.gold.accuracy ?? 0)} (${a.gold.correct} / ${a.gold.n})` : '—',
        ),
      ),
    );
    if (!rows.length) rows.push(h('tr', {}, h('td', { colspan: 6, className: 'muted' }, 'No annotators yet.')));
    body.replaceChildren(...rows);
  }

  private renderLeaderboardTable(rows: LeaderboardRow[]): void {
    const body = this.root.querySelector<HTMLElement>('[data-rows="leaderboard"]');
    if (!body) return;
    const trs = rows.map((r) =>
      h(
        'tr',
        { 'data-testid': 'leaderboard-row' },
        h('td', { className: 'num' }, String(r.rank)),
        h('td', {}, r.model),
        h('td', { className: 'num' }, r.score.toFixed(1)),
        h('td', { className: 'num nowrap' }, `${r.ci_low.toFixed(1)} – ${r.ci_high.toFixed(1)}`),
        h('td', { className: 'num' }, num(r.n)),
      ),
    );
    if (!trs.length) trs.push(h('tr', {}, h('td', { colspan: 5, className: 'muted' }, 'No comparisons between named models yet.')));
    body.replaceChildren(...trs);
  }
}

function isDashboard(value: unknown): value is Dashboard {
  if (!value || typeof value !== 'object') return false;
  const d = value as Partial<Dashboard>;
  return !!d.progress && !!d.throughput && Array.isArray(d.annotators) && !!d.leaderboard && Array.isArray(d.leaderboard.rows);
}

function main(): void {
  const root = document.querySelector<HTMLElement>('.dashboard[data-live-url]');
  if (!root) return;
  const view = new DashboardView(root);
  const embedded = document.getElementById('dashboard-data')?.textContent;
  if (embedded) {
    try {
      const initial: unknown = JSON.parse(embedded);
      if (isDashboard(initial)) view.render(initial);
    } catch {
      // The socket's first message draws the page instead.
    }
  }
  const path = root.dataset.liveUrl;
  if (!path) return;
  openLiveSocket(path, {
    indicator: root.querySelector<HTMLElement>('[data-testid=live-status]'),
    read: (message) => (message.type === 'dashboard' && isDashboard(message.dashboard) ? message.dashboard : null),
    onMessage: (dashboard) => view.render(dashboard),
  });
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', main, { once: true });
} else {
  main();
}
