/** Entry point for the judging page (templates/annotation/judge.html): picks the kind's judge. */
import 'highlight.js/styles/github.css';
import './styles/judge.css';
import type { BaseJudge } from './judge/base';
import { PairwiseJudge } from './judge/pairwise';
import { RankingJudge } from './judge/ranking';
import { RatingJudge } from './judge/rating';
import type { Criterion, JudgeConfig, Kind } from './judge/types';

function readConfig(): JudgeConfig | null {
  const script = document.getElementById('judge-config');
  if (!script?.textContent) return null;
  try {
    return JSON.parse(script.textContent) as JudgeConfig;
  } catch {
    return null;
  }
}

function normalizeCriteria(raw: unknown): Criterion[] {
  if (!Array.isArray(raw)) return [];
  return raw
    .filter((c): c is Partial<Criterion> & { name: string } => Boolean(c) && typeof c.name === 'string')
    .map((c) => {
      const min = Number.isInteger(c.scale?.min) ? Number(c.scale!.min) : 1;
      const max = Number.isInteger(c.scale?.max) ? Number(c.scale!.max) : 5;
      return {
        name: c.name,
        label: c.label || c.name.replace(/_/g, ' ').replace(/^./, (s) => s.toUpperCase()),
        description: c.description ?? '',
        scale: { min, max: Math.max(max, min + 1), labels: c.scale?.labels ?? {} },
      };
    });
}

function normalize(config: JudgeConfig): JudgeConfig {
  const kind: Kind = config.kind === 'ranking' || config.kind === 'rating' ? config.kind : 'pairwise';
  return {
    ...config,
    kind,
    instructions: config.instructions ?? '',
    criteria: normalizeCriteria(config.criteria),
    flagReasons: Array.isArray(config.flagReasons) ? config.flagReasons : null,
    options: {
      allowTies: Boolean(config.options?.allowTies),
      allowBothBad: Boolean(config.options?.allowBothBad),
      strength: Boolean(config.options?.strength),
      requireRationale: Boolean(config.options?.requireRationale),
      allowEditing: Boolean(config.options?.allowEditing),
    },
  };
}

function main(): void {
  const root = document.getElementById('judge-app');
  if (!root) return;
  const raw = readConfig();
  if (!raw) {
    root.textContent = 'Could not start the judging app: configuration is missing.';
    return;
  }
  const config = normalize(raw);
  const Judge: new (root: HTMLElement, config: JudgeConfig) => BaseJudge =
    config.kind === 'ranking' ? RankingJudge : config.kind === 'rating' ? RatingJudge : PairwiseJudge;
  new Judge(root, config).start();
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', main, { once: true });
} else {
  main();
}
