/**
 * Word-level diff of two texts: the longest common subsequence over tokens.
 *
 * Tokens are runs of letters/digits, runs of whitespace, or single other
 * characters, so punctuation changes show up without swallowing the word next
 * to them. Pure functions, no DOM: unit-tested in frontend/tests/diff.test.ts.
 */

export type DiffOp = 'equal' | 'delete' | 'insert';

export interface DiffPart {
  op: DiffOp;
  text: string;
}

/** Above this many LCS cells (after trimming the common ends) the middle is reported as one change. */
export const MAX_CELLS = 4_000_000;

const TOKEN = /[\p{L}\p{N}_]+|\s+|[^\p{L}\p{N}_\s]/gu;

export function tokenize(text: string): string[] {
  return text.match(TOKEN) ?? [];
}

function push(parts: DiffPart[], op: DiffOp, text: string): void {
  if (!text) return;
  const last = parts[parts.length - 1];
  if (last && last.op === op) last.text += text;
  else parts.push({ op, text });
}

/**
 * Diff `a` (old, left) against `b` (new, right): 'delete' parts are only in
 * `a`, 'insert' parts only in `b`. Joining the equal+delete parts gives `a`,
 * joining the equal+insert parts gives `b`.
 */
export function diffWords(a: string, b: string): DiffPart[] {
  const x = tokenize(a);
  const y = tokenize(b);
  const parts: DiffPart[] = [];

  // Common prefix and suffix cost nothing and keep the table small.
  let start = 0;
  while (start < x.length && start < y.length && x[start] === y[start]) start++;
  let endX = x.length;
  let endY = y.length;
  while (endX > start && endY > start && x[endX - 1] === y[endY - 1]) {
    endX--;
    endY--;
  }
  push(parts, 'equal', x.slice(0, start).join(''));

  const n = endX - start;
  const m = endY - start;
  if (n * m > MAX_CELLS) {
    push(parts, 'delete', x.slice(start, endX).join(''));
    push(parts, 'insert', y.slice(start, endY).join(''));
  } else if (n > 0 || m > 0) {
    // lcs[i][j] = LCS length of x[start+i..endX) and y[start+j..endY), in one flat array.
    const width = m + 1;
    const lcs = new Uint32Array((n + 1) * width);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i * width + j] =
          x[start + i] === y[start + j]
            ? lcs[(i + 1) * width + j + 1] + 1
            : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (x[start + i] === y[start + j]) {
        push(parts, 'equal', x[start + i]);
        i++;
        j++;
      } else if (lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
        push(parts, 'delete', x[start + i]);
        i++;
      } else {
        push(parts, 'insert', y[start + j]);
        j++;
      }
    }
    for (; i < n; i++) push(parts, 'delete', x[start + i]);
    for (; j < m; j++) push(parts, 'insert', y[start + j]);
  }

  push(parts, 'equal', x.slice(endX).join(''));
  return parts;
}

/** The two sides of a diff: what to show for the left text and for the right text. */
export function diffSides(a: string, b: string): { left: DiffPart[]; right: DiffPart[] } {
  const parts = diffWords(a, b);
  return {
    left: parts.filter((p) => p.op !== 'insert'),
    right: parts.filter((p) => p.op !== 'delete'),
  };
}

/** Share of tokens the two texts have in common (0–1), for a one-line summary. */
export function similarity(a: string, b: string): number {
  const total = tokenize(a).length + tokenize(b).length;
  if (total === 0) return 1;
  const common = diffWords(a, b)
    .filter((p) => p.op === 'equal')
    .reduce((sum, p) => sum + tokenize(p.text).length, 0);
  return (2 * common) / total;
}
