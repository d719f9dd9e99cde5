"""Training rules of a campaign: the services (create, change, switch off, delete; audited, every
error naming its field), the managers' pages and the REST API; and the new-run form for each kind.

No model is loaded here: a model folder is a folder with a config.json under the model roots,
which is all a rule (or a queued run) checks. Firing is real (snapshot + queued run); the
training a fired run does is tested in test_triggers.py. Roles per route: test_permission_matrix.py.
"""

import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from annotation.errors import ApplicationError, ForbiddenError
from annotation.models import AuditEntry, Dataset
from tests.conftest import PASSWORD
from training.models import TrainingRule, TrainingRun
from training.rules import training_rule_create, training_rule_delete, training_rule_update
from training.services import training_rules_fire

from .support import judge_all

pytestmark = pytest.mark.django_db

SMALL = {"max_steps": 4, "learning_rate": 1e-3}


def _model_folder(path: Path, architecture: str) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"architectures": [architecture], "model_type": "bert"}))
    return path


@pytest.fixture
def models(settings, tmp_path):
    """Two model folders under a fresh model root, and a fresh folder for the runs."""
    settings.ARBITER_MODEL_ROOTS = [tmp_path / "models"]
    settings.ARBITER_TRAINING_DIR = tmp_path / "runs"
    reward = _model_folder(tmp_path / "models" / "reward-base", "BertForSequenceClassification")
    policy = _model_folder(tmp_path / "models" / "policy", "LlamaForCausalLM")
    return reward.resolve(), policy.resolve()


@pytest.fixture
def campaign(make_campaign, annotator, researcher):
    from annotation.models import Role
    from annotation.services.campaigns import membership_add

    campaign = make_campaign(items=6, overlap=1, annotators=[annotator])
    membership_add(campaign=campaign, user=researcher, role=Role.RESEARCHER)
    return campaign


def _rule(campaign, manager, models, **overrides):
    kwargs = {"kind": "every_n_judgments", "n": 3, "base_model_path": str(models[0]), "config": dict(SMALL),
              "dataset_method": "majority"}  # fmt: skip
    return training_rule_create(campaign=campaign, created_by=manager, **{**kwargs, **overrides})


# --- services --------------------------------------------------------------------------------------


def test_create_fills_in_the_config_counts_from_now_and_is_audited(campaign, manager, annotator, models):
    """N judgments are counted from the rule's creation; the stored config is complete."""
    judge_all(campaign, [annotator])  # 6 judgments before the rule
    rule = _rule(campaign, manager, models)
    assert (rule.kind, rule.n, rule.last_fired_count, rule.is_active) == ("every_n_judgments", 3, 6, True)
    assert rule.base_model_path == str(models[0])
    assert rule.config["max_steps"] == 4 and rule.config["truncation"] == "truncate_left"  # a default
    assert "output_dir" not in rule.config
    assert rule.dataset_params["bootstrap_rounds"] >= 1  # the method's defaults filled in
    entry = AuditEntry.objects.get(action="training_rule.create")
    assert entry.actor == manager and entry.campaign == campaign and entry.target == f"training_rule:{rule.pk}"
    assert entry.after["n"] == 3 and entry.after["base_model_path"] == str(models[0])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "hourly"}, "kind: must be one of every_n_judgments, on_close"),
        ({"n": 0}, "n: must be a whole number of judgments >= 1, got 0"),
        ({"n": None}, "n: must be a whole number of judgments >= 1, got None"),
        ({"dataset_method": "vote"}, "dataset_method: must be one of majority, dawid_skene, reliability_weighted"),
        ({"dataset_params": {"rounds": 5}}, "dataset_params.rounds: is not a parameter of majority; use: "),
        ({"config": {"learning_rate": 2}}, "config.learning_rate: `learning_rate` must be > 0 and < 1, got 2."),
        ({"config": {"output_dir": "/tmp/x"}}, "config.output_dir: is set by Arbiter for each run"),
        ({"base_model_path": "/etc"}, "base_model_path: The model path '/etc' is outside the model roots"),
        ({"gpus": 65}, "gpus: must be a whole number from 0 to 64, got 65"),
    ],
)  # fmt: skip
def test_create_refuses_bad_input_naming_the_field(campaign, manager, models, overrides, message):
    with pytest.raises(ApplicationError) as caught:
        _rule(campaign, manager, models, **overrides)
    assert caught.value.message.startswith(message), caught.value.message
    assert message.split(":", 1)[0] in caught.value.extra["fields"]
    assert not TrainingRule.objects.exists() and not AuditEntry.objects.filter(action__startswith="training_rule").exists()


def test_only_the_campaigns_managers_make_rules(campaign, manager, researcher, models, make_user):
    """A researcher of the campaign and a manager of another are refused; a superuser acts as a manager."""
    from annotation.models import Role

    with pytest.raises(ForbiddenError, match="Only the campaign's managers create and change its training rules."):
        _rule(campaign, researcher, models)
    with pytest.raises(ForbiddenError):
        _rule(campaign, make_user("boss2", Role.MANAGER), models)
    root = get_user_model().objects.create_superuser(username="root", password=PASSWORD, email="r@example.com")
    rule = _rule(campaign, root, models)
    with pytest.raises(ForbiddenError):
        training_rule_update(rule=rule, actor=researcher, is_active=False)
    with pytest.raises(ForbiddenError):
        training_rule_delete(rule=rule, actor=researcher)
    assert TrainingRule.objects.get().is_active


def test_update_changes_only_what_is_given_and_is_audited(campaign, manager, annotator, models):
    rule = _rule(campaign, manager, models, kind="on_close", n=None)
    rule = training_rule_update(rule=rule, actor=manager, config={"max_steps": 8})
    assert rule.config["max_steps"] == 8 and rule.config["learning_rate"] == 1e-4  # the whole config, replaced
    assert rule.kind == "on_close" and rule.dataset_method == "majority"
    change = AuditEntry.objects.get(action="training_rule.update")
    assert change.before["config"]["max_steps"] == 4 and set(change.after) == {"config"}

    judge_all(campaign, [annotator])  # an every-N rule made from an on-close one counts from now
    rule = training_rule_update(rule=rule, actor=manager, kind="every_n_judgments", n=10)
    assert (rule.kind, rule.n, rule.last_fired_count) == ("every_n_judgments", 10, 6)

    rule = training_rule_update(rule=rule, actor=manager, is_active=False)
    assert not rule.is_active
    assert AuditEntry.objects.filter(action="training_rule.disable").count() == 1
    rule = training_rule_update(rule=rule, actor=manager, is_active=True)
    assert AuditEntry.objects.filter(action="training_rule.enable").count() == 1
    training_rule_update(rule=rule, actor=manager, n=10)  # no change, no entry
    assert AuditEntry.objects.filter(action__startswith="training_rule.").count() == 5


def test_a_bad_update_changes_nothing(campaign, manager, models):
    rule = _rule(campaign, manager, models)
    before = TrainingRule.objects.values().get(pk=rule.pk)
    for kwargs, message in [
        ({"n": -1}, "n: must be a whole number of judgments >= 1, got -1"),
        ({"n": 5, "config": {"learning_rat": 0.1}}, "config.learning_rat: Unknown config key `learning_rat`."),
        ({"n": 5, "base_model_path": "gpt2"}, "base_model_path: 'gpt2' looks like a Hugging Face Hub id"),
        ({"is_active": "no"}, "is_active: must be true or false, got 'no'"),
        ({"dataset_params": {"bootstrap_rounds": -3}}, "dataset_params.bootstrap_rounds: must be "),
    ]:
        with pytest.raises(ApplicationError) as caught:
            training_rule_update(rule=rule, actor=manager, **kwargs)
        assert caught.value.message.startswith(message), caught.value.message
        assert TrainingRule.objects.values().get(pk=rule.pk) == before
    assert not AuditEntry.objects.filter(action="training_rule.update").exists()


def test_a_switched_off_rule_starts_nothing_and_delete_keeps_its_runs(campaign, manager, annotator, models):
    rule = _rule(campaign, manager, models)
    judge_all(campaign, [annotator])
    training_rule_update(rule=rule, actor=manager, is_active=False)
    assert training_rules_fire(campaign_id=campaign.pk, kind=rule.kind) == []
    training_rule_update(rule=rule, actor=manager, is_active=True)
    [run] = training_rules_fire(campaign_id=campaign.pk, kind=rule.kind)
    assert run.rule == rule and run.kind == "reward" and run.config["max_steps"] == 4
    assert run.dataset.method == "majority"

    training_rule_delete(rule=rule, actor=manager)
    assert not TrainingRule.objects.exists()
    run.refresh_from_db()
    assert run.rule is None and run.status == "queued"  # the run goes on
    entry = AuditEntry.objects.get(action="training_rule.delete")
    assert entry.before["kind"] == "every_n_judgments" and entry.target == f"training_rule:{rule.pk}"


# --- pages -----------------------------------------------------------------------------------------


def test_the_rules_page_lists_rules_their_runs_and_errors(campaign, manager, annotator, models, client):
    every = _rule(campaign, manager, models)
    closing = _rule(campaign, manager, models, kind="on_close", n=None, gpus=1)
    judge_all(campaign, [annotator])
    [run] = training_rules_fire(campaign_id=campaign.pk, kind=every.kind)
    TrainingRule.objects.filter(pk=closing.pk).update(last_error="<b>base model moved</b>", is_active=False)
    client.force_login(manager)
    detail = client.get(reverse("campaign_detail", kwargs={"campaign_id": campaign.pk})).content.decode()
    url = reverse("training_rule_list", kwargs={"campaign_id": campaign.pk})
    assert f'href="{url}"' in detail

    html = client.get(url).content.decode()
    assert f'data-testid="rule-{every.pk}"' in html and f'data-testid="rule-{closing.pk}"' in html
    assert "Every 3 judgments" in html and "next at 9 (last counted at 6)" in html
    assert "When the campaign closes" in html and "Majority vote snapshot · 1 GPU" in html and "1 GPUs" not in html
    assert f'href="/training/runs/{run.pk}/"' in html and " · v1" in html
    assert "&lt;b&gt;base model moved&lt;/b&gt;" in html and "<b>base model moved" not in html
    assert 'name="active" value="1"' in html  # the switched-off rule offers to switch it on
    assert "6</strong> judgments so far" in html


def test_new_rule_form_creates_and_shows_errors_on_their_fields(campaign, manager, models, client):
    client.force_login(manager)
    url = reverse("training_rule_new", kwargs={"campaign_id": campaign.pk})
    page = client.get(url).content.decode()
    assert str(models[0]) in page and 'name="learning_rate" value="0.0001"' in page  # defaults shown
    assert 'value="every_n_judgments" id="id_kind_0" required checked' in page  # the usual kind first

    form = {"kind": "every_n_judgments", "n": "50", "dataset_method": "majority", "dataset_params": "{}",
            "base_model_path": str(models[0]), "gpus": "0", "is_active": "on", "learning_rate": "0.001",
            "num_train_epochs": "1.0", "max_steps": "4", "per_device_train_batch_size": "8",
            "per_device_eval_batch_size": "16", "gradient_accumulation_steps": "1", "weight_decay": "0",
            "warmup_ratio": "0", "lr_scheduler_type": "linear", "max_grad_norm": "1", "max_length": "512",
            "truncation": "truncate_left", "eval_fraction": "0.1", "eval_steps": "50", "logging_steps": "10",
            "save_steps": "50", "save_total_limit": "2", "seed": "42", "mixed_precision": "auto"}  # fmt: skip
    bad = client.post(url, {**form, "learning_rate": "2"})
    assert bad.status_code == 400 and not TrainingRule.objects.exists()
    assert "`learning_rate` must be &gt; 0 and &lt; 1, got 2.0." in bad.content.decode()
    bad = client.post(url, {**form, "dataset_params": "{rounds: 5"})
    assert bad.status_code == 400 and "is not valid JSON" in bad.content.decode()
    bad = client.post(url, {**form, "dataset_params": '{"rounds": 5}'})
    assert bad.status_code == 400 and "is not a parameter of majority" in bad.content.decode()
    bad = client.post(url, {**form, "n": ""})
    assert bad.status_code == 400 and "must be a whole number of judgments &gt;= 1, got None" in bad.content.decode()

    done = client.post(url, form, follow=True)
    rule = TrainingRule.objects.get()
    assert done.redirect_chain == [(reverse("training_rule_list", kwargs={"campaign_id": campaign.pk}), 302)]
    assert f"Rule {rule.pk} is saved: a reward model trains every 50 judgments." in done.content.decode()
    assert (rule.n, rule.config["learning_rate"], rule.config["max_steps"], rule.created_by) == (50, 1e-3, 4, manager)


def test_edit_switch_off_and_delete_from_the_pages(campaign, manager, models, client):
    rule = _rule(campaign, manager, models)
    client.force_login(manager)
    edit = reverse("training_rule_edit", kwargs={"rule_id": rule.pk})
    page = client.get(edit).content.decode()
    assert 'name="n" value="3"' in page and 'name="max_steps" value="4"' in page
    assert 'name="dataset_params"' in page and "bootstrap_rounds" in page

    form = {"kind": "on_close", "n": "", "dataset_method": "majority", "dataset_params": json.dumps(rule.dataset_params),
            "base_model_path": str(models[0]), "gpus": "0", **{k: v for k, v in rule.config.items() if v is not None}}  # fmt: skip
    form["learning_rate"] = "0.002"
    done = client.post(edit, form)  # is_active left unticked: switched off too
    assert done.status_code == 302
    rule.refresh_from_db()
    assert (rule.kind, rule.n, rule.is_active, rule.config["learning_rate"]) == ("on_close", None, False, 0.002)

    on = client.post(reverse("training_rule_set_active", kwargs={"rule_id": rule.pk}), {"active": "1"}, follow=True)
    assert f"Rule {rule.pk} is on: it starts runs again." in on.content.decode()
    rule.refresh_from_db()
    assert rule.is_active
    odd = client.post(reverse("training_rule_set_active", kwargs={"rule_id": rule.pk}), {"active": "maybe"}, follow=True)
    assert "active: must be 1 (switch the rule on) or 0 (switch it off)" in odd.content.decode()

    gone = client.post(reverse("training_rule_delete", kwargs={"rule_id": rule.pk}), follow=True)
    assert f"Rule {rule.pk} is deleted; the runs it started stay." in gone.content.decode()
    assert not TrainingRule.objects.exists()


# --- API -------------------------------------------------------------------------------------------


def test_rules_api_create_list_detail_update_delete(campaign, manager, researcher, annotator, models, client_for):
    api = client_for(manager)
    create = reverse("api:training_rule_create", kwargs={"campaign_id": campaign.pk})
    body = {"kind": "every_n_judgments", "n": 2, "base_model_path": str(models[0]), "config": SMALL,
            "dataset_method": "majority"}  # fmt: skip
    response = api.post(create, body, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["n"] == 2 and data["next_at"] == 2 and data["is_active"] and data["created_by"] == "manager"
    assert data["config"]["max_steps"] == 4 and data["run_count"] == 0 and data["recent_runs"] == []
    rule_id = data["id"]

    judge_all(campaign, [annotator])
    [run] = training_rules_fire(campaign_id=campaign.pk, kind="every_n_judgments")
    detail = api.get(reverse("api:training_rule_detail", kwargs={"rule_id": rule_id})).json()
    assert detail["run_count"] == 1 and detail["last_run_at"] is not None and detail["next_at"] == 8
    assert detail["recent_runs"] == [
        {"id": run.pk, "status": "queued", "dataset_version": 1, "step": 0, "total_steps": 0,
         "queued_at": detail["recent_runs"][0]["queued_at"]}
    ]  # fmt: skip
    listed = api.get(reverse("api:training_rule_list", kwargs={"campaign_id": campaign.pk})).json()
    assert [r["id"] for r in listed] == [rule_id]

    update = reverse("api:training_rule_update", kwargs={"rule_id": rule_id})
    changed = api.post(update, {"is_active": False, "n": 5}, format="json")
    assert changed.status_code == 200 and not changed.json()["is_active"] and changed.json()["n"] == 5
    assert changed.json()["config"]["max_steps"] == 4  # untouched

    delete = reverse("api:training_rule_delete", kwargs={"rule_id": rule_id})
    assert api.post(delete).status_code == 204
    assert TrainingRun.objects.get(pk=run.pk).rule_id is None


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"kind": "hourly"}, "kind", 'kind: "hourly" is not a valid choice.'),
        ({"n": 0}, "n", "n: Ensure this value is greater than or equal to 1."),
        ({"n": None}, "n", "n: must be a whole number of judgments >= 1, got None"),
        ({"config": {"max_steps": "ten"}}, "config.max_steps", "config.max_steps: `max_steps` must be an integer, got 'ten'."),
        ({"dataset_params": {"bootstrap_rounds": "many"}}, "dataset_params.bootstrap_rounds", "dataset_params.bootstrap_rounds: must be "),
        ({"base_model_path": "/nowhere/model"}, "base_model_path", "base_model_path: The model path '/nowhere/model' does not exist."),
    ],
)  # fmt: skip
def test_rules_api_bad_input_gets_400_naming_the_field(campaign, manager, models, client_for, overrides, field, message):
    body = {"kind": "every_n_judgments", "n": 2, "base_model_path": str(models[0]), **overrides}
    response = client_for(manager).post(reverse("api:training_rule_create", kwargs={"campaign_id": campaign.pk}),
                                        body, format="json")  # fmt: skip
    assert response.status_code == 400
    assert response.json()["message"].startswith(message), response.json()
    assert field in response.json()["extra"]["fields"]
    assert not TrainingRule.objects.exists()


def test_rules_api_refuses_researchers_and_hides_from_others(campaign, manager, researcher, outsider, models, client_for):
    rule = _rule(campaign, manager, models)
    detail = reverse("api:training_rule_detail", kwargs={"rule_id": rule.pk})
    refused = client_for(researcher).post(reverse("api:training_rule_update", kwargs={"rule_id": rule.pk}),
                                          {"is_active": False}, format="json")  # fmt: skip
    assert refused.status_code == 403
    assert refused.json()["message"] == "Only the campaign's managers see and change its training rules."
    assert client_for(outsider).get(detail).status_code == 404
    assert client_for(researcher).get(detail).status_code == 403
    assert TrainingRule.objects.get().is_active


# --- the new-run form, per kind --------------------------------------------------------------------


def _succeeded_reward_run(campaign, manager, settings, *, accuracy: float) -> TrainingRun:
    """A reward-model run marked succeeded, its model folder under the runs' folder."""
    run = TrainingRun.objects.create(kind="reward", campaign=campaign, base_model_path="/m", config={},
                                     created_by=manager, status="succeeded", step=4, total_steps=4,
                                     finished_at=timezone.now(),
                                     summary={"metrics": {"eval_accuracy": accuracy}})  # fmt: skip
    model = _model_folder(Path(settings.ARBITER_TRAINING_DIR) / f"run-{run.pk}" / "model", "BertForSequenceClassification")
    run.artifacts = {"model": str(model)}
    run.save(update_fields=["artifacts"])
    return run


def test_the_ppo_form_picks_prompts_policy_and_a_succeeded_reward_run(
    campaign, manager, annotator, models, settings, client, django_capture_on_commit_callbacks
):
    pytest.importorskip("torch")  # the PPO trainer's module is imported to read its settings
    reward_run = _succeeded_reward_run(campaign, manager, settings, accuracy=0.875)
    client.force_login(manager)
    url = reverse("training_run_new") + "?kind=ppo"
    html = client.get(url).content.decode()
    assert f'<option value="campaign:{campaign.pk}">{campaign.name}</option>' in html
    assert f'<option value="{reward_run.artifacts["model"]}" selected>Run #{reward_run.pk} — Reward model on Test campaign, held-out accuracy 0.875</option>' in html
    assert f'<option value="{models[1]}" selected>' in html  # the causal LM is offered first as the policy
    assert 'name="kl_coef"' in html and "Policy (base model)" in html
    assert 'name="reference_path"' in html and "— the policy as the run starts" in html

    form = {"kind": "ppo", "source": f"campaign:{campaign.pk}", "base_model_path": str(models[1]), "gpus": "0",
            "reward_model_path": reward_run.artifacts["model"], "reference_path": "", "learning_rate": "0.001",
            "total_episodes": "64", "num_steps": "2", "batch_size": "8", "mini_batch_size": "4",
            "gradient_accumulation_steps": "1", "num_ppo_epochs": "1", "max_prompt_length": "64",
            "response_length": "8", "temperature": "0.7", "missing_eos_penalty": "1.0", "kl_coef": "0.05",
            "kl_estimator": "k1", "kl_horizon": "10000", "cliprange": "0.2", "cliprange_value": "0.2",
            "vf_coef": "0.1", "gamma": "1.0", "lam": "0.95", "reward_normalization": "none", "max_grad_norm": "1.0",
            "lr_decay": "linear", "adam_eps": "1e-05", "seed": "1", "save_steps": "50", "save_total_limit": "2",
            "sample_steps": "1", "sample_rows": "4", "kl_warning_threshold": "10.0"}  # fmt: skip
    bad = client.post(reverse("training_run_new"), {**form, "gpus": "2"})
    assert bad.status_code == 200 and "a PPO run trains on one device" in bad.content.decode()
    with django_capture_on_commit_callbacks(execute=False):
        done = client.post(reverse("training_run_new"), form)
    assert done.status_code == 302, done.content.decode()[-2000:]
    run = TrainingRun.objects.get(kind="ppo")
    assert run.campaign == campaign and run.dataset is None and run.base_model_path == str(models[1])
    assert run.config["reward_model_path"] == reward_run.artifacts["model"] and run.config["reference_path"] is None
    assert run.config["num_steps"] == 2


def test_the_dpo_form_trains_a_policy_on_a_snapshot(campaign, manager, annotator, models, client):
    from .support import build_dataset

    judge_all(campaign, [annotator])
    dataset = build_dataset(campaign, manager)
    client.force_login(manager)
    html = client.get(reverse("training_run_new") + f"?kind=dpo&dataset={dataset.pk}").content.decode()
    assert f'<option value="{dataset.pk}" selected>' in html and "Direct Preference Optimization" in html
    assert f'<option value="{models[1]}" selected>' in html and 'name="beta"' in html
    assert 'name="source"' not in html and 'name="reward_model_path"' not in html


def test_the_run_page_of_each_kind_embeds_its_kind_and_samples_as_data(campaign, manager, models, client):
    """The page's script draws the kind's charts and the samples; the HTML holds them only as JSON data."""
    run = TrainingRun.objects.create(
        kind="ppo", campaign=campaign, base_model_path=str(models[1]), created_by=manager, status="running",
        config={"reward_model_path": str(models[0]), "output_dir": "/tmp/x"},
        summary={"samples": {"step": 1, "rows": [{"prompt": "Hi", "response": "<script>alert(1)</script>", "score": 0.5}]}},
    )  # fmt: skip
    client.force_login(manager)
    html = client.get(reverse("training_run_detail", kwargs={"run_id": run.pk})).content.decode()
    assert 'data-testid="run-charts" data-kind="ppo"' in html and 'data-testid="samples" hidden' in html
    assert f"reward model <code>{models[0]}</code>" in html and "policy <code>" in html
    assert "<script>alert(1)</script>" not in html  # json_script escapes it
    assert "Score with it" not in html  # only a reward model scores
    assert Dataset.objects.count() == 0
