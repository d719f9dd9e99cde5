/** Entry point for the judging page (templates/annotation/judge.html). */
import 'highlight.js/styles/github.css';
import './styles/judge.css';
import { PairwiseJudge } from './judge/pairwise';
import type { JudgeConfig } from './judge/types';

function readConfig(): JudgeConfig | null {
  const script = document.getElementById('judge-config');
  if (!script?.textContent) return null;
  try {
    return JSON.parse(script.textContent) as JudgeConfig;
  } catch {
    return null;
  }
}

function main(): void {
  const root = document.getElementById('judge-app');
  if (!root) return;
  const config = readConfig();
  if (!config) {
    root.textContent = 'Could not start the judging app: configuration is missing.';
    return;
  }
  config.options = {
    allowTies: Boolean(config.options?.allowTies),
    allowBothBad: Boolean(config.options?.allowBothBad),
    strength: Boolean(config.options?.strength),
    requireRationale: Boolean(config.options?.requireRationale),
  };
  config.instructions = config.instructions ?? '';
  new PairwiseJudge(root, config).start();
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', main, { once: true });
} else {
  main();
}
