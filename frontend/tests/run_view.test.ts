/** Unit tests for src/run_view.ts: what a run's page shows for each kind of run. */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { finalFacts, isWarning, kindView, KIND_VIEWS, sampleTable, seriesPoints, type MetricRow } from '../src/run_view.js';

const row = (id: number, step: number, split: 'train' | 'eval', values: Record<string, number>): MetricRow => ({
  id,
  step,
  split,
  values,
});

test('each kind charts its own metrics; an unknown kind is shown as a reward model', () => {
  const ids = (kind: string) => kindView(kind).charts.map((c) => c.id);
  assert.deepEqual(ids('reward'), ['loss', 'accuracy']);
  assert.deepEqual(ids('dpo'), ['loss', 'accuracy', 'margin', 'rewards']);
  assert.deepEqual(ids('ppo'), ['score', 'kl', 'clipfrac', 'losses', 'responses']);
  assert.deepEqual(ids('kto'), ids('reward'));
  const keys = (kind: string) => kindView(kind).charts.flatMap((c) => c.series.flatMap((s) => s.keys));
  assert.ok(keys('dpo').includes('eval_rewards/accuracies') && keys('dpo').includes('rewards/margins'));
  for (const name of ['objective/scores', 'objective/rlhf_reward', 'objective/kl', 'objective/entropy',
    'policy/clipfrac_avg', 'val/clipfrac_avg', 'loss/policy_avg', 'loss/value_avg']) {
    assert.ok(keys('ppo').includes(name), name);
  }
  for (const view of Object.values(KIND_VIEWS)) {
    assert.equal(new Set(view.charts.map((c) => c.id)).size, view.charts.length, 'chart ids are unique');
  }
});

test('a series takes its split, in step order, skipping rows without the metric or with a non-finite value', () => {
  const rows = [
    row(3, 4, 'train', { 'rewards/accuracies': 0.75 }),
    row(1, 2, 'train', { 'rewards/accuracies': 0.5, loss: 0.6 }),
    row(2, 3, 'eval', { 'eval_rewards/accuracies': 0.6 }),
    row(4, 6, 'train', { loss: 0.4 }),
    row(5, 8, 'train', { 'rewards/accuracies': Number.NaN }),
  ];
  const [trainSeries, evalSeries] = kindView('dpo').charts[1].series;
  assert.deepEqual(seriesPoints(rows, trainSeries), [{ x: 2, y: 0.5 }, { x: 4, y: 0.75 }]);
  assert.deepEqual(seriesPoints(rows, evalSeries), [{ x: 3, y: 0.6 }]);
  assert.deepEqual(seriesPoints(rows, { keys: ['missing', 'loss'], split: 'train', label: '' }), [
    { x: 2, y: 0.6 },
    { x: 6, y: 0.4 },
  ]);
});

test('final figures follow the kind', () => {
  assert.deepEqual(
    finalFacts('reward', { metrics: { eval_accuracy: 0.8125, train_loss: 0.5 }, counts: { train_pairs: 9, eval_pairs: 3 } }, '/m'),
    [['Held-out accuracy', '0.8125'], ['Training loss (mean)', '0.5000'], ['Pairs', '9 trained on, 3 held out'], ['Model', '/m']],
  );
  assert.deepEqual(finalFacts('dpo', { metrics: { 'eval_rewards/accuracies': 0.7, eval_accuracy: 0.1 } }), [
    ['Held-out reward accuracy', '0.7000'],
  ]);
  assert.deepEqual(finalFacts('ppo', { metrics: { 'objective/kl': 0.25, eos_rate: 0.875, response_length: 24.25 } }), [
    ['KL to the reference (last step)', '0.2500'],
    ['Responses ending with EOS', '87.5%'],
    ['Mean response length (tokens)', '24.3'],
  ]);
  assert.deepEqual(finalFacts('ppo', {}), []);
});

test('the sample table reads {step, rows} or a bare list, as text', () => {
  const table = sampleTable({
    samples: { step: 10, rows: [{ prompt: 'Hi <b>', response: '<img src=x onerror=alert(1)>', score: 1.5 }, { prompt: 'x' }] },
  });
  assert.deepEqual(table, {
    step: 10,
    rows: [
      { prompt: 'Hi <b>', response: '<img src=x onerror=alert(1)>', score: 1.5 },
      { prompt: 'x', response: '', score: null },
    ],
  });
  const conversation = sampleTable({ samples: [{ prompt: [{ role: 'user', content: 'Q?' }], response: 'A.', score: -1 }] });
  assert.deepEqual(conversation, { step: null, rows: [{ prompt: 'Q?', response: 'A.', score: -1 }] });
  assert.equal(sampleTable({}), null);
  assert.equal(sampleTable({ samples: { step: 3, rows: [] } }), null);
  assert.equal(sampleTable({ samples: 'nonsense' }), null);
});

test('warnings are warning-level lines or lines starting "Warning:"', () => {
  assert.ok(isWarning({ level: 'info', message: 'Warning: step 4: objective/kl is 12.1' }));
  assert.ok(isWarning({ level: 'warning', message: 'slow' }));
  assert.ok(!isWarning({ level: 'info', message: 'Step 2/6: loss 0.6' }));
  assert.ok(!isWarning({ level: 'info', message: 'No Warning: here' }));
});
