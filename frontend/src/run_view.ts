/**
 * What a training run's page shows for each kind of run: its charts, its final figures, the PPO
 * sample table, and which log lines are warnings. Pure functions over the run's JSON (no DOM, no
 * Chart.js), so that they are unit-tested on their own (tests/run_view.test.ts); run.ts draws them.
 *
 * Metric names are the trainers' own: TRL's for the reward model (`loss`, `accuracy`, `eval_*`) and
 * DPO (`rewards/accuracies`, `rewards/margins`, ...), and the usual RLHF names for PPO
 * (`objective/kl`, `policy/clipfrac_avg`, `val/clipfrac_avg`, ...). A series is drawn from the first
 * of its `keys` that a metric row has; a series no row has is left out of the legend.
 */

export type Split = 'train' | 'eval';

export interface MetricRow {
  id: number;
  step: number;
  split: Split;
  values: Record<string, number>;
}

export interface SeriesSpec {
  keys: string[]; // the first one a row has is plotted
  split: Split;
  label: string;
  right?: boolean; // on the chart's right-hand axis (another scale)
}

export interface ChartSpec {
  id: string; // the canvas's data-testid is `${id}-chart`
  title: string;
  description: string; // the canvas's accessible name
  series: SeriesSpec[];
  min?: number;
  max?: number;
  rightTitle?: string;
}

export interface FinalSpec {
  keys: string[];
  label: string;
  format?: 'number' | 'percent' | 'integer' | 'tenths';
}

export interface KindView {
  charts: ChartSpec[];
  final: FinalSpec[];
}

const train = (keys: string | string[], label: string, right = false): SeriesSpec => ({
  keys: Array.isArray(keys) ? keys : [keys],
  split: 'train',
  label,
  right,
});
const heldOut = (keys: string | string[], label: string, right = false): SeriesSpec => ({
  keys: Array.isArray(keys) ? keys : [keys],
  split: 'eval',
  label,
  right,
});

/** The one table of what each kind of run charts and sums up. */
export const KIND_VIEWS: Record<string, KindView> = {
  reward: {
    charts: [
      {
        id: 'loss',
        title: 'Loss',
        description: 'Training and held-out loss by step',
        series: [train('loss', 'Training'), heldOut('eval_loss', 'Held out')],
        min: 0,
      },
      {
        id: 'accuracy',
        title: 'Accuracy',
        description: 'Training and held-out accuracy by step (share of pairs with r_chosen above r_rejected)',
        series: [train('accuracy', 'Training'), heldOut('eval_accuracy', 'Held out')],
        min: 0,
        max: 1,
      },
    ],
    final: [
      { keys: ['eval_accuracy'], label: 'Held-out accuracy' },
      { keys: ['eval_loss'], label: 'Held-out loss' },
      { keys: ['eval_margin'], label: 'Held-out mean margin' },
      { keys: ['train_loss'], label: 'Training loss (mean)' },
    ],
  },
  dpo: {
    charts: [
      {
        id: 'loss',
        title: 'Loss',
        description: 'Training and held-out DPO loss by step',
        series: [train('loss', 'Training'), heldOut('eval_loss', 'Held out')],
        min: 0,
      },
      {
        id: 'accuracy',
        title: 'Reward accuracy',
        description: 'Share of pairs whose chosen reply gets the higher implicit reward, training and held out, by step',
        series: [train('rewards/accuracies', 'Training'), heldOut('eval_rewards/accuracies', 'Held out')],
        min: 0,
        max: 1,
      },
      {
        id: 'margin',
        title: 'Reward margin',
        description: 'Mean implicit reward of the chosen reply minus the rejected one, training and held out, by step',
        series: [train('rewards/margins', 'Training'), heldOut('eval_rewards/margins', 'Held out')],
      },
      {
        id: 'rewards',
        title: 'Implicit rewards',
        description: 'Mean implicit reward of the chosen and of the rejected replies (training) by step',
        series: [train('rewards/chosen', 'Chosen'), train('rewards/rejected', 'Rejected')],
      },
    ],
    final: [
      { keys: ['eval_rewards/accuracies'], label: 'Held-out reward accuracy' },
      { keys: ['eval_rewards/margins'], label: 'Held-out reward margin' },
      { keys: ['eval_loss'], label: 'Held-out loss' },
      { keys: ['train_loss'], label: 'Training loss (mean)' },
    ],
  },
  ppo: {
    charts: [
      {
        id: 'score',
        title: 'Score and RLHF reward',
        description: "Mean reward-model score of the sampled responses, and the RLHF reward (score minus the KL penalty), by step",
        series: [train('objective/scores', 'Score'), train('objective/rlhf_reward', 'RLHF reward')],
      },
      {
        id: 'kl',
        title: 'KL and entropy',
        description: 'KL divergence to the reference policy and policy entropy (nats per response) by step',
        series: [train('objective/kl', 'KL to the reference'), train('objective/entropy', 'Entropy', true)],
        rightTitle: 'entropy',
      },
      {
        id: 'clipfrac',
        title: 'Clip fractions',
        description: 'Share of policy and value updates clipped, by step',
        series: [train('policy/clipfrac_avg', 'Policy'), train('val/clipfrac_avg', 'Value')],
        min: 0,
      },
      {
        id: 'losses',
        title: 'Losses',
        description: 'Policy loss and value loss by step',
        series: [train('loss/policy_avg', 'Policy loss'), train('loss/value_avg', 'Value loss', true)],
        rightTitle: 'value loss',
      },
      {
        id: 'responses',
        title: 'Responses',
        description: 'Mean response length (tokens) and share of responses ending with EOS, by step',
        series: [train('response_length', 'Length (tokens)'), train('eos_rate', 'Ends with EOS', true)],
        rightTitle: 'EOS share',
      },
    ],
    final: [
      { keys: ['objective/scores'], label: 'Score (last step)' },
      { keys: ['objective/rlhf_reward'], label: 'RLHF reward (last step)' },
      { keys: ['objective/kl'], label: 'KL to the reference (last step)' },
      { keys: ['eos_rate'], label: 'Responses ending with EOS', format: 'percent' },
      { keys: ['response_length'], label: 'Mean response length (tokens)', format: 'tenths' },
    ],
  },
};

/** Return what the page shows for `kind` (a kind it does not know is shown as a reward-model run). */
export function kindView(kind: string): KindView {
  return KIND_VIEWS[kind] ?? KIND_VIEWS.reward;
}

function firstNumber(values: Record<string, number>, keys: string[]): number | undefined {
  for (const key of keys) {
    const value = values[key];
    if (typeof value === 'number' && Number.isFinite(value)) return value;
  }
  return undefined;
}

/** Return the series' points, in step order (`rows` hold one row per split and step). */
export function seriesPoints(rows: Iterable<MetricRow>, series: SeriesSpec): { x: number; y: number }[] {
  const points: { x: number; y: number }[] = [];
  for (const row of rows) {
    if (row.split !== series.split) continue;
    const y = firstNumber(row.values, series.keys);
    if (y !== undefined) points.push({ x: row.step, y });
  }
  return points.sort((a, b) => a.x - b.x);
}

function formatValue(value: number, format: FinalSpec['format']): string {
  if (format === 'percent') return `${(value * 100).toFixed(1)}%`;
  if (format === 'integer') return String(Math.round(value));
  if (format === 'tenths') return value.toFixed(1);
  return Math.abs(value) >= 1000 ? value.toFixed(1) : value.toFixed(4);
}

export interface RunSummary {
  metrics?: Record<string, number>;
  counts?: Record<string, number>;
  samples?: unknown;
  [key: string]: unknown;
}

/** Return the (label, value) facts of a finished run: its kind's final metrics, then its pair counts. */
export function finalFacts(kind: string, summary: RunSummary, model?: string | null): [string, string][] {
  const metrics = summary.metrics ?? {};
  const facts: [string, string][] = [];
  for (const spec of kindView(kind).final) {
    const value = firstNumber(metrics, spec.keys);
    if (value !== undefined) facts.push([spec.label, formatValue(value, spec.format)]);
  }
  const counts = summary.counts;
  if (counts && (counts.train_pairs !== undefined || counts.eval_pairs !== undefined)) {
    facts.push(['Pairs', `${counts.train_pairs ?? '?'} trained on, ${counts.eval_pairs ?? '?'} held out`]);
  }
  if (model) facts.push(['Model', model]);
  return facts;
}

export interface SampleRow {
  prompt: string;
  response: string;
  score: number | null;
}

function asText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    // A conversation: show its messages' contents, the last (the one answered) last.
    return value
      .map((m) => (m && typeof m === 'object' && 'content' in m ? String((m as { content: unknown }).content) : String(m)))
      .join('\n');
  }
  return value === undefined || value === null ? '' : JSON.stringify(value);
}

/**
 * Return the latest sample table of a PPO run (`summary.samples`: `{step, rows}` or a list of rows),
 * or null when there is none. Every cell is plain text for the page to insert as text.
 */
export function sampleTable(summary: RunSummary): { step: number | null; rows: SampleRow[] } | null {
  const raw = summary.samples;
  let step: number | null = null;
  let rows: unknown;
  if (Array.isArray(raw)) {
    rows = raw;
  } else if (raw && typeof raw === 'object') {
    const table = raw as { step?: unknown; rows?: unknown };
    step = typeof table.step === 'number' ? table.step : null;
    rows = table.rows;
  }
  if (!Array.isArray(rows) || rows.length === 0) return null;
  return {
    step,
    rows: rows
      .filter((r): r is Record<string, unknown> => !!r && typeof r === 'object')
      .map((r) => ({
        prompt: asText(r.prompt),
        response: asText(r.response),
        score: typeof r.score === 'number' && Number.isFinite(r.score) ? r.score : null,
      })),
  };
}

/** Return whether a log line is a warning: logged at warning level, or a trainer's "Warning: ..." line. */
export function isWarning(line: { level: string; message: string }): boolean {
  return line.level === 'warning' || line.message.startsWith('Warning:');
}
