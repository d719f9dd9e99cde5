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
from tests.training.test_runs_support import TINY_CONFIG, build_dataset, judge_all, private_broker
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
