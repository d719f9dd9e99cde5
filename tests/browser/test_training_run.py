"""A training run's page in a real browser: the progress bar, the charts and the log follow the run
live (no reload), and Cancel stops it with a checkpoint and offers Resume.

The run trains the tiny local models in a thread of this process (as a worker would, through
`training_run_execute`); the page's websocket is served by uvicorn in this process too.
"""

import threading
from pathlib import Path

import pytest
from django.db import connections

from tests.browser.test_accessibility import assert_accessible
from tests.training.support import TINY_CONFIG, build_dataset, judge_all, private_broker
from training.execution import training_run_execute
from training.services import training_run_create

pytestmark = [pytest.mark.browser, pytest.mark.training, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")


@pytest.fixture
def dataset(settings, tmp_path, make_campaign, annotator, manager):
    pytest.importorskip("trl")
    from training.tiny import build_tiny_models

    models = build_tiny_models(tmp_path / "models")
    settings.ARBITER_MODEL_ROOTS = [tmp_path / "models"]
    settings.ARBITER_TRAINING_DIR = tmp_path / "runs"
    settings.ARBITER_TRAINING_HEARTBEAT_SECONDS = 1.0
    with private_broker(tmp_path / "broker"):  # queued tasks go nowhere: this test runs them itself
        campaign = make_campaign(items=12, overlap=1, annotators=[annotator])
        judge_all(campaign, [annotator])
        yield build_dataset(campaign, manager), models.reward_base


def _train_in_background(run) -> threading.Thread:
    def work() -> None:
        try:
            training_run_execute(run_id=run.pk, task_id=run.celery_task_id)
        finally:
            connections.close_all()

    thread = threading.Thread(target=work, name=f"train-run-{run.pk}", daemon=True)
    thread.start()
    return thread


def _progress(page) -> int:
    return int(page.get_by_test_id("progress-bar").get_attribute("aria-valuenow"))


def test_the_run_page_follows_the_run_live(page, login, dataset, manager, page_problems):
    snapshot, base_model = dataset
    config = {**TINY_CONFIG, "max_steps": 40, "logging_steps": 2, "eval_steps": 10, "save_steps": 100}
    run = training_run_create(dataset=snapshot, base_model_path=str(base_model), config=config, created_by=manager)
    login(manager)
    page.goto(f"/training/runs/{run.pk}/")
    page.get_by_test_id("live-status").filter(has_text="Live").wait_for()
    assert page.get_by_test_id("run-status").inner_text() == "Queued"
    assert _progress(page) == 0 and page.get_by_test_id("progress-text").inner_text() == "Step 0 of ?"
    page.evaluate("window.__noReload = 'still here'")

    thread = _train_in_background(run)
    try:
        # The bar moves and both charts fill while the run trains.
        page.wait_for_function(
            "Number(document.querySelector('[data-testid=progress-bar]').getAttribute('aria-valuenow')) >= 10",
            timeout=60_000,
        )
        page.wait_for_function(
            "Number(document.querySelector('[data-testid=loss-chart]').dataset.points || 0) >= 5"
            " && Number(document.querySelector('[data-testid=accuracy-chart]').dataset.points || 0) >= 5",
            timeout=30_000,
        )
        assert page.get_by_test_id("run-status").inner_text() in ("Running", "Succeeded")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "training-run-live.png"), full_page=True)
        page.get_by_test_id("run-status").filter(has_text="Succeeded").wait_for(timeout=90_000)
    finally:
        thread.join(timeout=120)
    assert _progress(page) == 40 and page.get_by_test_id("progress-text").inner_text() == "Step 40 of 40"
    assert page.locator(".run-progress-fill").evaluate("el => parseFloat(el.style.width)") == 100
    assert page.get_by_test_id("final-metrics").is_visible()
    assert "Held-out accuracy" in page.get_by_test_id("final-metrics").inner_text()
    log = page.get_by_test_id("run-log").inner_text()
    assert "Step 2/40: loss" in log and "Held-out evaluation at step 10/40" in log and "Succeeded after 40 steps" in log
    assert not page.get_by_test_id("cancel-run").is_visible()
    assert page.evaluate("window.__noReload") == "still here"
    page.screenshot(path=str(SHOTS / "training-run-done.png"), full_page=True)
    assert_accessible(page, "the run page")

    page.get_by_test_id("nav-training").click()
    row = page.get_by_test_id("run-list").locator("tbody tr").first
    assert "Succeeded" in row.inner_text() and "40 / 40" in row.inner_text()
    page.screenshot(path=str(SHOTS / "training-run-list.png"), full_page=True)
    assert_accessible(page, "the run list")
    page.get_by_test_id("new-run").click()
    assert page.locator("#id_base_model_path").input_value() == str(base_model.resolve())
    assert page.locator("#id_learning_rate").input_value() == "0.0001"
    page.screenshot(path=str(SHOTS / "training-run-new.png"), full_page=True)
    assert_accessible(page, "the new-run form")
    page_problems.assert_none()


def test_cancel_from_the_page_then_resume(page, login, dataset, manager, page_problems):
    snapshot, base_model = dataset
    config = {**TINY_CONFIG, "max_steps": 400, "logging_steps": 1, "eval_steps": None, "save_steps": 1000}
    run = training_run_create(dataset=snapshot, base_model_path=str(base_model), config=config, created_by=manager)
    login(manager)
    page.goto(f"/training/runs/{run.pk}/")
    page.get_by_test_id("live-status").filter(has_text="Live").wait_for()
    thread = _train_in_background(run)
    try:
        page.wait_for_function(
            "Number(document.querySelector('[data-testid=progress-bar]').getAttribute('aria-valuenow')) >= 2",
            timeout=60_000,
        )
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_test_id("cancel-run").click()
        page.get_by_test_id("run-status").filter(has_text="Cancelled").wait_for(timeout=60_000)
    finally:
        thread.join(timeout=120)
    stopped = _progress(page)
    assert 2 <= stopped < 400
    assert page.get_by_test_id("resume-run").is_visible() and not page.get_by_test_id("cancel-run").is_visible()
    assert f"Cancelled at step {stopped}/400; checkpoint saved (checkpoint-{stopped})" in page.get_by_test_id("run-log").inner_text()
    page.get_by_test_id("resume-run").click()
    page.get_by_test_id("run-status").filter(has_text="Queued").wait_for(timeout=10_000)
    page.get_by_test_id("run-log").filter(has_text=f"Resumed by manager from checkpoint-{stopped}").wait_for(timeout=10_000)
    page.screenshot(path=str(SHOTS / "training-run-resumed.png"), full_page=True)
    page_problems.assert_none()


# --- Kinds other than a reward model, and the rules page (stored rows: nothing trains here) ---------


def _model_folder(path: Path, architecture: str) -> Path:
    import json

    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"architectures": [architecture], "model_type": "llama"}))
    return path.resolve()


def _ppo_metrics(step: int) -> dict[str, float]:
    return {"objective/scores": 0.1 * step, "objective/rlhf_reward": 0.08 * step, "objective/kl": 0.02 * step,
            "objective/entropy": 30.0 - step, "objective/non_score_reward": -0.02 * step,
            "policy/clipfrac_avg": 0.05, "val/clipfrac_avg": 0.1, "loss/policy_avg": -0.01, "loss/value_avg": 0.4,
            "val/ratio": 1.0, "eos_rate": 0.5 + 0.1 * step, "response_length": 20.0 + step, "lr": 1e-3, "beta": 0.05}  # fmt: skip


UNTRUSTED = '<img src=x onerror="window.__xss = 1"><b>bold?</b>'


def test_a_ppo_run_page_charts_its_metrics_and_shows_samples_as_text(
    page, login, settings, tmp_path, make_campaign, manager, page_problems
):
    from django.utils import timezone

    from training.models import TrainingMetric, TrainingRun
    from training.services import training_log

    settings.ARBITER_MODEL_ROOTS = [tmp_path / "models"]
    policy = _model_folder(tmp_path / "models" / "policy", "LlamaForCausalLM")
    campaign = make_campaign(items=2)
    run = TrainingRun.objects.create(
        kind="ppo", campaign=campaign, base_model_path=str(policy), created_by=manager, status="running",
        step=2, total_steps=4, started_at=timezone.now(), config={"reward_model_path": "/models/rm"},
        summary={"samples": {"step": 1, "rows": [{"prompt": "Say hi", "response": UNTRUSTED, "score": 1.25}]}},
    )  # fmt: skip
    for step in (1, 2):
        TrainingMetric.objects.create(run=run, step=step, split="train", values=_ppo_metrics(step))
    training_log(run_id=run.pk, message="Step 1/4: score 0.1000")
    training_log(run_id=run.pk, message="Warning: step 2: objective/kl is 12.30 nats, above kl_warning_threshold 10.0.")
    login(manager)
    page.goto(f"/training/runs/{run.pk}/")
    page.get_by_test_id("live-status").filter(has_text="Live").wait_for()

    charts = page.locator("[data-testid=run-charts] canvas")
    assert charts.evaluate_all("cs => cs.map(c => c.dataset.testid)") == [
        "score-chart", "kl-chart", "clipfrac-chart", "losses-chart", "responses-chart"]  # fmt: skip
    assert page.get_by_test_id("kl-chart").get_attribute("data-points") == "4"  # KL and entropy, 2 steps each
    cells = page.get_by_test_id("samples").locator("tbody td")
    assert cells.all_inner_texts() == ["Say hi", UNTRUSTED, "1.250"]  # shown as text
    assert page.get_by_test_id("samples").locator("img, b").count() == 0
    assert page.evaluate("window.__xss") is None
    assert page.get_by_test_id("samples-step").inner_text() == "Sampled at step 1."
    warning = page.locator(".run-log li[data-warning]")
    assert warning.count() == 1 and warning.inner_text().endswith("above kl_warning_threshold 10.0.")
    assert page.get_by_test_id("warning-count").inner_text() == "1 warning"

    # The worker logs step 3 and a new sample table: the page follows without a reload.
    TrainingMetric.objects.create(run=run, step=3, split="train", values=_ppo_metrics(3))
    TrainingRun.objects.filter(pk=run.pk).update(
        step=3, summary={"samples": {"step": 3, "rows": [{"prompt": "Say bye", "response": "Bye.", "score": -0.5}]}}
    )
    page.get_by_test_id("samples-step").filter(has_text="Sampled at step 3.").wait_for(timeout=10_000)
    assert page.get_by_test_id("score-chart").get_attribute("data-points") == "6"
    TrainingRun.objects.filter(pk=run.pk).update(
        status="succeeded", step=4, finished_at=timezone.now(),
        summary={"metrics": _ppo_metrics(4), "samples": {"step": 3, "rows": [{"prompt": "Say bye", "response": "Bye.", "score": -0.5}]}},
    )  # fmt: skip
    page.get_by_test_id("run-status").filter(has_text="Succeeded").wait_for(timeout=10_000)
    facts = page.get_by_test_id("final-metrics").inner_text()
    assert "Score (last step)\n0.4000" in facts and "Responses ending with EOS\n90.0%" in facts
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "training-run-ppo.png"), full_page=True)
    assert_accessible(page, "a PPO run's page")

    # The PPO form: prompts from a campaign or a snapshot, the policy, a reward model.
    page.goto("/training/new/?kind=ppo")
    assert page.locator("#id_source").input_value() == f"campaign:{campaign.pk}"
    assert page.locator("#id_base_model_path").input_value() == str(policy)
    assert page.locator("#id_reward_model_path").is_visible() and page.locator("#id_kl_coef").input_value() == "0.05"
    page.screenshot(path=str(SHOTS / "training-run-new-ppo.png"), full_page=True)
    assert_accessible(page, "the new PPO run form")
    page_problems.assert_none()


def test_the_rules_page_creates_lists_switches_off_and_deletes_rules(
    page, login, settings, tmp_path, make_campaign, manager, annotator, page_problems
):
    from training.models import TrainingRule, TrainingRun

    settings.ARBITER_MODEL_ROOTS = [tmp_path / "models"]
    settings.ARBITER_TRAINING_DIR = tmp_path / "runs"
    base = _model_folder(tmp_path / "models" / "reward-base", "BertForSequenceClassification")
    with private_broker(tmp_path / "broker"):
        campaign = make_campaign(items=6, overlap=1, annotators=[annotator])
        login(manager)
        page.goto(f"/campaigns/{campaign.pk}/")
        page.get_by_test_id("training-rules").click()
        assert page.get_by_test_id("no-rules").is_visible()
        page.get_by_test_id("new-rule").click()
        page.get_by_label("Every N judgments").check()
        page.locator("#id_n").fill("4")
        page.locator("#id_dataset_method").select_option("majority")
        assert page.locator("#id_base_model_path").input_value() == str(base)
        page.locator("summary", has_text="Reward model settings").click()
        page.locator("#id_max_steps").fill("0")
        page.get_by_role("button", name="Create the rule").click()
        assert "`max_steps` must be >= 1, got 0." in page.locator("#id_max_steps").locator("..").inner_text()
        assert [e.split(" http")[0] for e in page_problems.errors] == ["HTTP 400: POST"]  # the refused form
        page_problems.errors.clear()
        page.locator("#id_max_steps").fill("5")
        page.get_by_role("button", name="Create the rule").click()
        page.get_by_text("a reward model trains every 4 judgments.").wait_for()
        rule = TrainingRule.objects.get()
        assert rule.config["max_steps"] == 5 and rule.dataset_method == "majority"

        judge_all(campaign, [annotator])  # the 4th judgment fires the rule (its run is queued, not sent)
        rule.refresh_from_db()
        run = TrainingRun.objects.get(rule=rule)
        assert rule.last_fired_count == 4 and rule.last_error == ""
        page.reload()
        row = page.get_by_test_id(f"rule-{rule.pk}")
        assert "Every 4 judgments" in row.inner_text() and "next at 8 (last counted at 4)" in row.inner_text()
        assert row.get_by_role("link", name=f"#{run.pk}").is_visible() and "Queued" in row.inner_text()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "training-rules.png"), full_page=True)
        assert_accessible(page, "the training rules page")

        row.get_by_role("button", name=f"Switch off rule {rule.pk}").click()
        page.get_by_text(f"Rule {rule.pk} is off").wait_for()
        rule.refresh_from_db()
        assert not rule.is_active
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_test_id(f"rule-{rule.pk}").get_by_role("button", name=f"Delete rule {rule.pk}").click()
        page.get_by_text(f"Rule {rule.pk} is deleted; the runs it started stay.").wait_for()
        assert not TrainingRule.objects.exists()
    page_problems.assert_none()
