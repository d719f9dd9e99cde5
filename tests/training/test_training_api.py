"""REST API of training runs: create (validated), detail with metrics, list, cancel, resume, score;
and the run page and new-run form. Permissions per role are in tests/test_permission_matrix.py."""

import pytest
from django.urls import reverse

from annotation.models import Role
from annotation.services.campaigns import membership_add
from training.execution import training_run_execute
from training.models import TrainingRun

from .support import (
    TINY_CONFIG,
    make_ready_dataset,
    private_broker,
)

pytestmark = [pytest.mark.training, pytest.mark.django_db]


@pytest.fixture
def ready_dataset(make_campaign, annotator, researcher, manager):
    return make_ready_dataset(make_campaign, annotator, researcher, manager)


def _body(dataset, tiny_models, **overrides):
    return {"dataset_id": dataset.pk, "base_model_path": str(tiny_models.reward_base), "config": dict(TINY_CONFIG),
            **overrides}  # fmt: skip


@pytest.fixture
def trained_run(training_settings, ready_dataset, manager, tiny_models, client_for):
    response = client_for(manager).post(reverse("api:training_run_create"), _body(ready_dataset, tiny_models), format="json")
    assert response.status_code == 201, response.json()
    run = TrainingRun.objects.get(pk=response.json()["id"])
    run = training_run_execute(run_id=run.pk, task_id=run.celery_task_id)
    assert run.status == "succeeded", run.error
    return run


def test_create_queues_a_run_with_the_full_config(training_settings, ready_dataset, manager, tiny_models, client_for):
    response = client_for(manager).post(reverse("api:training_run_create"), _body(ready_dataset, tiny_models), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["status"] == "queued" and data["kind"] == "reward" and data["dataset"] == ready_dataset.pk
    assert data["dataset_version"] == 1 and data["campaign_name"] == ready_dataset.campaign.name
    assert data["config"]["max_steps"] == 6 and data["config"]["warmup_ratio"] == 0.0
    assert data["created_by"] == "manager" and data["progress"] == 0.0


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"config": {"learning_rate": 0}}, "config.learning_rate",
         "config.learning_rate: `learning_rate` must be > 0 and < 1, got 0."),
        ({"config": {"eval_fraction": 1.5}}, "config.eval_fraction",
         "config.eval_fraction: `eval_fraction` must be >= 0 and < 1, got 1.5."),
        ({"base_model_path": "/etc"}, "base_model_path", "base_model_path: The model path '/etc' is outside the model roots"),
        ({"gpus": -1}, "gpus", "gpus: Ensure this value is greater than or equal to 0."),
        ({"dataset_id": "seven"}, "dataset_id", "dataset_id: A valid integer is required."),
    ],
)  # fmt: skip
def test_bad_input_gets_400_naming_the_field(
    training_settings, ready_dataset, manager, tiny_models, client_for, overrides, field, message
):
    response = client_for(manager).post(
        reverse("api:training_run_create"), _body(ready_dataset, tiny_models, **overrides), format="json"
    )
    assert response.status_code == 400
    assert response.json()["message"].startswith(message), response.json()
    assert field in response.json()["extra"]["fields"]
    assert not TrainingRun.objects.exists()


def test_detail_has_progress_metrics_and_log(trained_run, researcher, client_for):
    """A researcher of the campaign reads the run: every logged metric and the log."""
    response = client_for(researcher).get(reverse("api:training_run_detail", kwargs={"run_id": trained_run.pk}))
    assert response.status_code == 200
    data = response.json()
    assert data["run"]["status"] == "succeeded" and data["run"]["progress"] == 1.0
    assert [(m["step"], m["split"]) for m in data["metrics"]] == [(2, "train"), (3, "eval"), (4, "train"), (6, "eval"), (6, "train")]
    assert "eval_accuracy" in data["metrics"][1]["values"]
    assert data["log"][0]["message"].startswith("Queued by manager") and data["log"][-1]["message"].startswith("Succeeded")
    assert data["run"]["summary"]["metrics"]["eval_accuracy"] >= 0


def test_list_shows_the_runs_you_may_read(trained_run, researcher, outsider, client_for):
    url = reverse("api:training_run_list")
    assert [r["id"] for r in client_for(researcher).get(url).json()] == [trained_run.pk]
    assert client_for(outsider).get(url).json() == []
    assert client_for(researcher).get(url, {"status": "failed"}).json() == []
    response = client_for(researcher).get(url, {"status": "finished"})
    assert response.status_code == 400 and response.json()["message"].startswith("status: ")


def test_cancel_and_resume(training_settings, ready_dataset, manager, researcher, tiny_models, client_for):
    client = client_for(manager)
    run_id = client.post(reverse("api:training_run_create"), _body(ready_dataset, tiny_models), format="json").json()["id"]
    cancel = reverse("api:training_run_cancel", kwargs={"run_id": run_id})
    resume = reverse("api:training_run_resume", kwargs={"run_id": run_id})

    response = client_for(researcher).post(cancel)
    assert response.status_code == 403
    assert response.json()["message"] == "Only the campaign's managers can change its training runs."
    assert client.post(cancel).json()["status"] == "cancelled"
    again = client.post(cancel)
    assert again.status_code == 409
    assert again.json()["message"] == "This run has already cancelled; there is nothing to cancel."
    assert client.post(resume).json()["status"] == "queued"
    conflict = client.post(resume)
    assert conflict.status_code == 409
    assert conflict.json()["message"] == "Only a failed or cancelled run can be resumed; this one is queued."


def test_score_endpoint_scores_pairs_with_the_trained_model(trained_run, researcher, client_for):
    from training.scoring import load_scorer

    url = reverse("api:training_run_score", kwargs={"run_id": trained_run.pk})
    pairs = [
        {"prompt": [{"role": "user", "content": "Question 1?"}], "response": "Answer one to 1"},
        {"prompt": "Question 1?", "response": "Answer two to 1"},  # a string is one user message
    ]
    response = client_for(researcher).post(url, {"pairs": pairs}, format="json")
    assert response.status_code == 200, response.json()
    scores = response.json()["scores"]
    prompt = [{"role": "user", "content": "Question 1?"}]
    expected = load_scorer(trained_run.artifacts["model"]).score([(prompt, "Answer one to 1"), (prompt, "Answer two to 1")])
    assert scores == pytest.approx(expected, abs=1e-5)

    bad = client_for(researcher).post(url, {"pairs": [{"prompt": [{"role": "user"}], "response": "x"}]}, format="json")
    assert bad.status_code == 400
    assert bad.json()["message"] == "pairs[0].prompt: must be a list of {role, content} messages, or a string"
    too_many = client_for(researcher).post(url, {"pairs": [pairs[0]] * 257}, format="json")
    assert too_many.status_code == 400 and too_many.json()["message"].startswith("pairs: ")


def test_score_needs_a_succeeded_reward_run(training_settings, ready_dataset, manager, tiny_models, client_for):
    client = client_for(manager)
    run_id = client.post(reverse("api:training_run_create"), _body(ready_dataset, tiny_models), format="json").json()["id"]
    response = client.post(reverse("api:training_run_score", kwargs={"run_id": run_id}),
                           {"pairs": [{"prompt": "Hi", "response": "Hello"}]}, format="json")  # fmt: skip
    assert response.status_code == 409
    assert response.json()["message"] == "Only a succeeded reward-model run scores; this is a reward model run that is queued."


# --- pages ----------------------------------------------------------------------------------------


def test_new_run_form_lists_snapshots_and_models_and_queues(
    training_settings, ready_dataset, manager, tiny_models, client, django_capture_on_commit_callbacks
):
    client.force_login(manager)
    page = client.get(reverse("training_run_new") + f"?dataset={ready_dataset.pk}")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'<option value="{ready_dataset.pk}" selected>' in html
    assert str(tiny_models.reward_base.resolve()) in html
    assert 'name="learning_rate" value="0.0001"' in html  # every setting shows its default
    assert "Peak AdamW learning rate" in html  # with its documentation

    form = {"dataset": ready_dataset.pk, "base_model_path": str(tiny_models.reward_base.resolve()), "gpus": 0}
    defaults = {"learning_rate": "0.0001", "num_train_epochs": "1.0", "per_device_train_batch_size": 8,
                "per_device_eval_batch_size": 16, "gradient_accumulation_steps": 1, "weight_decay": 0,
                "warmup_ratio": 0, "lr_scheduler_type": "linear", "max_grad_norm": 1, "max_length": 64,
                "truncation": "drop", "eval_fraction": 0.1, "eval_steps": 50, "logging_steps": 10, "save_steps": 50,
                "save_total_limit": 2, "seed": 42, "mixed_precision": "auto"}  # fmt: skip
    bad = client.post(reverse("training_run_new"), {**form, **defaults, "learning_rate": "2"})
    assert bad.status_code == 200 and not TrainingRun.objects.exists()
    assert "`learning_rate` must be &gt; 0 and &lt; 1, got 2.0." in bad.content.decode()
    with django_capture_on_commit_callbacks(execute=False):
        done = client.post(reverse("training_run_new"), {**form, **defaults})
    run = TrainingRun.objects.get()
    assert done.status_code == 302 and done["Location"] == reverse("training_run_detail", kwargs={"run_id": run.pk})
    assert run.config["truncation"] == "drop" and run.config["max_length"] == 64 and run.config["max_steps"] is None


def test_run_page_embeds_its_state_and_live_url(trained_run, researcher, manager, client):
    client.force_login(researcher)
    html = client.get(reverse("training_run_detail", kwargs={"run_id": trained_run.pk})).content.decode()
    assert 'id="run-page-data"' in html and f'"liveUrl": "/ws/training/runs/{trained_run.pk}/"' in html
    assert 'data-testid="cancel-run"' not in html  # a researcher reads, never changes
    client.force_login(manager)
    html = client.get(reverse("training_run_detail", kwargs={"run_id": trained_run.pk})).content.decode()
    assert 'data-testid="cancel-run"' in html and 'data-testid="resume-run"' in html


def test_the_dataset_page_links_to_a_new_run(ready_dataset, manager, client):
    client.force_login(manager)
    html = client.get(reverse("dataset_detail", kwargs={"dataset_id": ready_dataset.pk})).content.decode()
    assert f'href="/training/new/?dataset={ready_dataset.pk}"' in html
    assert "Train a reward model on this snapshot" in html


def test_a_log_line_is_text_not_html(training_settings, ready_dataset, manager, tiny_models, client):
    """Log lines and errors can carry model or user text: the page escapes them."""
    from training.services import training_log, training_run_create

    run = training_run_create(dataset=ready_dataset, base_model_path=str(tiny_models.reward_base),
                              config=dict(TINY_CONFIG), created_by=manager, queue=False)  # fmt: skip
    training_log(run_id=run.pk, message="<img src=x onerror=alert(1)>")
    TrainingRun.objects.filter(pk=run.pk).update(error="<script>alert(1)</script>")
    client.force_login(manager)
    html = client.get(reverse("training_run_detail", kwargs={"run_id": run.pk})).content.decode()
    assert "<script>alert(1)</script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_researcher_membership_is_needed_to_read(trained_run, make_user, client_for):
    other = make_user("res2", Role.RESEARCHER)
    url = reverse("api:training_run_detail", kwargs={"run_id": trained_run.pk})
    assert client_for(other).get(url).status_code == 404
    membership_add(campaign=trained_run.campaign, user=other, role=Role.RESEARCHER)
    assert client_for(other).get(url).status_code == 200


def test_a_snapshot_kind_needs_a_dataset(training_settings, ready_dataset, manager, tiny_models, client_for):
    """A campaign alone is for kinds that train on prompts; a reward model needs a snapshot."""
    client = client_for(manager)
    url = reverse("api:training_run_create")
    body = {"base_model_path": str(tiny_models.reward_base), "config": dict(TINY_CONFIG)}
    response = client.post(url, {**body, "campaign_id": ready_dataset.campaign_id}, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == "dataset_id: a reward model run trains on a dataset snapshot; choose one"
    response = client.post(url, body, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == "dataset_id: give the dataset snapshot to train on (or campaign_id for PPO)"
    assert not TrainingRun.objects.exists()


@pytest.fixture
def committed_dataset(make_campaign, annotator, researcher, manager, tmp_path):
    """`ready_dataset` in a transactional test: its build task goes to a broker no worker reads."""
    with private_broker(tmp_path / "broker"):
        yield make_ready_dataset(make_campaign, annotator, researcher, manager)


@pytest.mark.django_db(transaction=True)
def test_the_run_websocket_sends_a_snapshot_then_what_is_new_and_refuses_others(
    training_settings, committed_dataset, manager, researcher, outsider, settings, tiny_models
):
    """Readers get the run, its metrics and log, then each new line; anyone else is closed with 4403."""
    from django.test import Client

    from config.asgi import application
    from tests.websockets import ORIGIN, WebsocketCommunicator, run_async
    from training.consumers import CLOSE_FORBIDDEN, run_live_path
    from training.services import training_log, training_run_create

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    run = training_run_create(dataset=committed_dataset, base_model_path=str(tiny_models.reward_base),
                              config=dict(TINY_CONFIG), created_by=manager, queue=False)  # fmt: skip

    def socket(user) -> WebsocketCommunicator:
        client = Client()
        client.force_login(user)
        cookie = (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())
        return WebsocketCommunicator(application, run_live_path(run.pk), headers=[ORIGIN, cookie])

    async def refused(comm) -> int:
        accepted, _ = await comm.connect()
        assert accepted
        closed = await comm.receive_output(2)
        await comm.wait(1)
        return closed.get("code")

    async def follow(comm) -> tuple[dict, dict]:
        accepted, _ = await comm.connect()
        assert accepted
        first = await comm.receive_json_from(timeout=3)
        from channels.db import database_sync_to_async

        await database_sync_to_async(training_log)(run_id=run.pk, message="<b>a line</b> from the worker")
        update = await comm.receive_json_from(timeout=5)
        await comm.disconnect()
        return first, update

    assert run_async(refused, socket(outsider)) == CLOSE_FORBIDDEN
    first, update = run_async(follow, socket(researcher))
    assert first["type"] == "snapshot" and first["run"]["id"] == run.pk and first["run"]["status"] == "queued"
    assert first["metrics"] == [] and first["log"][0]["message"].startswith("Queued by manager")
    assert update["type"] == "update" and [line["message"] for line in update["log"]] == ["<b>a line</b> from the worker"]
