/**
 * Chart.js (bundled, registered piecemeal so only what is used ships) and the few chart shapes
 * Arbiter draws: bars, a line over time, and intervals (a floating bar with a dot at the estimate).
 *
 * Labels drawn on a canvas are never parsed as markup, so model names and usernames are safe here.
 * Every chart is created once and then updated in place (`setChart`), so a live page does not
 * rebuild its canvases on each update.
 */
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
  type ChartConfiguration,
  type ChartDataset,
  type Plugin,
} from 'chart.js';

Chart.register(
  BarController,
  BarElement,
  CategoryScale,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
);

export const COLORS = {
  primary: '#3b5bdb',
  primarySoft: 'rgba(59, 91, 219, 0.28)',
  primaryFill: 'rgba(59, 91, 219, 0.12)',
  muted: '#9aa3b5',
  mutedSoft: 'rgba(154, 163, 181, 0.35)',
  warning: '#c77700',
  success: '#2b8a3e',
  danger: '#c92a2a',
  text: '#5d6679',
  grid: '#e8ebf1',
  reference: '#1b2030',
};

const reducedMotion =
  typeof window.matchMedia === 'function' && window.matchMedia('(prefers-reduced-motion: reduce)').matches;

Chart.defaults.color = COLORS.text;
Chart.defaults.borderColor = COLORS.grid;
Chart.defaults.font.family = getComputedStyle(document.body).fontFamily || 'system-ui, sans-serif';
Chart.defaults.maintainAspectRatio = false;
// Change the defaults' fields, never replace the object: Chart.js resolves each animated
// property (numbers, colours) through it.
if (reducedMotion) Chart.defaults.animation = false;
else Chart.defaults.set('animation', { duration: 250 });

/** A reference line across the plot at `value` on `axis` ("x" or "y"), with a small label. */
export function referenceLine(id: string, axis: 'x' | 'y', value: () => number | null, label: () => string): Plugin {
  return {
    id,
    afterDatasetsDraw(chart) {
      const v = value();
      const scale = chart.scales[axis];
      if (v === null || !scale || !Number.isFinite(v)) return;
      const { ctx, chartArea } = chart;
      const at = scale.getPixelForValue(v);
      ctx.save();
      ctx.strokeStyle = COLORS.reference;
      ctx.setLineDash([5, 4]);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      if (axis === 'x') {
        ctx.moveTo(at, chartArea.top);
        ctx.lineTo(at, chartArea.bottom);
      } else {
        ctx.moveTo(chartArea.left, at);
        ctx.lineTo(chartArea.right, at);
      }
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.font = `11px ${Chart.defaults.font.family}`;
      const text = label();
      // On a white box, so that the label stays readable over a bar.
      const width = ctx.measureText(text).width;
      const [x, y] = axis === 'x' ? [at - width / 2, chartArea.top - 4] : [chartArea.right - width - 2, at - 4];
      ctx.fillStyle = 'rgba(255, 255, 255, 0.85)';
      ctx.fillRect(x - 3, y - 11, width + 6, 14);
      ctx.fillStyle = COLORS.reference;
      ctx.textAlign = 'left';
      ctx.fillText(text, x, y);
      ctx.restore();
    },
  };
}

export type AnyChart = Chart<'bar' | 'line', unknown[], string>;

/** Create a chart on `canvas` (the caller keeps it and updates it with `setChart`). */
export function makeChart(canvas: HTMLCanvasElement, config: ChartConfiguration<'bar' | 'line', unknown[], string>): AnyChart {
  return new Chart(canvas, config) as AnyChart;
}

/** Replace a chart's labels and each dataset's data, then redraw (animated unless reduced motion). */
export function setChart(chart: AnyChart, labels: string[], data: unknown[][], extra?: (chart: AnyChart) => void): void {
  chart.data.labels = labels;
  data.forEach((values, k) => {
    const dataset = chart.data.datasets[k];
    if (dataset) dataset.data = values;
  });
  extra?.(chart);
  chart.update();
}

/** A horizontal chart of intervals: a floating bar from low to high and a dot at the estimate. */
export function intervalChart(
  canvas: HTMLCanvasElement,
  opts: { intervalLabel: string; pointLabel: string; min?: number; max?: number; percent?: boolean; plugins?: Plugin[] },
): AnyChart {
  const format = (v: number, digits = 1): string => (opts.percent ? `${(v * 100).toFixed(digits)}%` : v.toFixed(digits));
  const interval: ChartDataset<'bar', unknown[]> = {
    type: 'bar',
    label: opts.intervalLabel,
    data: [],
    backgroundColor: COLORS.primarySoft,
    borderColor: COLORS.primary,
    borderWidth: 1,
    borderSkipped: false,
    borderRadius: 4,
    barPercentage: 0.5,
    categoryPercentage: 0.9,
    order: 2,
  };
  const point: ChartDataset<'line', unknown[]> = {
    type: 'line',
    label: opts.pointLabel,
    data: [],
    showLine: false,
    pointRadius: 6,
    pointHoverRadius: 7,
    pointBackgroundColor: COLORS.primary,
    pointBorderColor: '#fff',
    pointBorderWidth: 1.5,
    pointStyle: 'circle',
    order: 1,
  };
  return makeChart(canvas, {
    type: 'bar',
    data: { labels: [], datasets: [interval, point] as ChartDataset<'bar' | 'line', unknown[]>[] },
    options: {
      indexAxis: 'y',
      layout: { padding: { top: 14, right: 8 } },
      scales: {
        x: {
          min: opts.min,
          max: opts.max,
          ticks: { maxRotation: 0, callback: (v) => format(Number(v), 0) },
        },
        y: { grid: { display: false } },
      },
      plugins: {
        legend: { display: true, position: 'bottom', labels: { boxWidth: 12, usePointStyle: true } },
        tooltip: {
          callbacks: {
            label: (item) => {
              const raw = item.raw as number | [number, number] | null;
              if (Array.isArray(raw)) return `${opts.intervalLabel}: ${format(raw[0])} – ${format(raw[1])}`;
              return raw === null ? '' : `${opts.pointLabel}: ${format(raw)}`;
            },
          },
        },
      },
    },
    plugins: opts.plugins ?? [],
  });
}
