/** Unit tests for src/diff.ts: `npm test` (compiled by tsc, run by node --test). */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { diffSides, diffWords, MAX_CELLS, similarity, tokenize } from '../src/diff.js';

const join = (parts: { text: string }[]): string => parts.map((p) => p.text).join('');

test('tokenize splits words, spaces and punctuation', () => {
  assert.deepEqual(tokenize('Hello, wörld  42!'), ['Hello', ',', ' ', 'wörld', '  ', '42', '!']);
  assert.deepEqual(tokenize(''), []);
});

test('identical texts are one equal part', () => {
  assert.deepEqual(diffWords('same text', 'same text'), [{ op: 'equal', text: 'same text' }]);
});

test('a changed word is a delete and an insert', () => {
  assert.deepEqual(diffWords('the quick fox', 'the slow fox'), [
    { op: 'equal', text: 'the ' },
    { op: 'delete', text: 'quick' },
    { op: 'insert', text: 'slow' },
    { op: 'equal', text: ' fox' },
  ]);
});

test('insertions and deletions in the middle keep the common words', () => {
  const parts = diffWords('one two three four', 'one three four five');
  assert.equal(join(parts.filter((p) => p.op !== 'insert')), 'one two three four');
  assert.equal(join(parts.filter((p) => p.op !== 'delete')), 'one three four five');
  assert.deepEqual(
    parts.filter((p) => p.op !== 'equal').map((p) => [p.op, p.text.trim()]),
    [['delete', 'two'], ['insert', 'five']],
  );
});

test('sides rebuild both texts exactly', () => {
  const a = 'Use `sorted(xs)`; it returns a new list.\n\nDone.';
  const b = 'Use `xs.sort()`: it sorts in place.\n\nDone!';
  const { left, right } = diffSides(a, b);
  assert.equal(join(left), a);
  assert.equal(join(right), b);
  assert.ok(left.some((p) => p.op === 'delete'));
  assert.ok(right.some((p) => p.op === 'insert'));
  assert.ok(!left.some((p) => p.op === 'insert'));
  assert.ok(!right.some((p) => p.op === 'delete'));
});

test('empty sides', () => {
  assert.deepEqual(diffWords('', 'new words'), [{ op: 'insert', text: 'new words' }]);
  assert.deepEqual(diffWords('old', ''), [{ op: 'delete', text: 'old' }]);
  assert.deepEqual(diffWords('', ''), []);
});

test('huge inputs fall back to one change without building the table', () => {
  const n = Math.ceil(Math.sqrt(MAX_CELLS)) + 10;
  const a = Array.from({ length: n }, (_, i) => `a${i}`).join(' ');
  const b = Array.from({ length: n }, (_, i) => `b${i}`).join(' ');
  const parts = diffWords(`start ${a} end`, `start ${b} end`);
  assert.deepEqual(parts.map((p) => p.op), ['equal', 'delete', 'insert', 'equal']);
});

test('similarity', () => {
  assert.equal(similarity('a b', 'a b'), 1);
  assert.equal(similarity('', ''), 1);
  assert.ok(similarity('one two three', 'one two four') > 0.5);
  assert.equal(similarity('x', 'y'), 0);
});
