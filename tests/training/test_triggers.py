"""Training rules: a reward-model run on a fresh snapshot every N judgments, or when the campaign
closes; once per threshold, never a second run while one is queued or running."""

from pathlib import Path

import pytest

from annotation.errors import ApplicationError
from annotation.models import Campaign, Dataset, Judgment
from annotation.services.campaigns import campaign_set_status
from annotation.services.serving import assignment_lease_next, judgment_submit
from training.execution import training_run_execute
from training.models import TrainingRule, TrainingRun
from training.rules import training_rule_create, training_rule_delete, training_rule_update
from training.services import (
    training_rules_after_judgment,
    training_rules_fire,
    training_rules_on_close,
    training_run_cancel,
)

from .support import TINY_CONFIG, private_broker

pytestmark = [pytest.mark.training, pytest.mark.django_db]


@pytest.fixture
def broker(tmp_path):
    """Tasks sent after commit go to a broker folder no worker reads."""
    with private_broker(tmp_path / "broker") as options:
        yield options


@pytest.fixture
def campaign(make_campaign, annotator):
    return make_campaign(items=12, overlap=1, annotators=[annotator])


def _rule(campaign, manager, tiny_models, **kwargs):
    defaults = {
        "kind": "every_n_judgments",
        "n": 3,
        "base_model_path": str(tiny_models.reward_base),
        "config": dict(TINY_CONFIG),
        "dataset_method": "majority",
        "dataset_params": {"bootstrap_rounds": 10},
    }
    return training_rule_create(campaign=campaign, created_by=manager, **{**defaults, **kwargs})


def _judge_one(campaign, annotator, capture) -> None:
    """Submit one judgment through the serving service and run what it left for after commit."""
    with capture(execute=True):
        a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
        first = a.item.item_responses.get(position=0).response_id
        judgment_submit(assignment_id=a.pk, annotator=annotator,
                        answer={"outcome": "preferred", "preferred_response_id": first, "strength": 2})  # fmt: skip


def test_every_n_fires_once_per_threshold_and_never_beside_an_active_run(
    training_settings, broker, campaign, manager, annotator, tiny_models, django_capture_on_commit_callbacks
):
    rule = _rule(campaign, manager, tiny_models)

    def runs():
        return list(TrainingRun.objects.filter(rule=rule).order_by("pk"))

    for _ in range(2):
        _judge_one(campaign, annotator, django_capture_on_commit_callbacks)
    assert runs() == []
    _judge_one(campaign, annotator, django_capture_on_commit_callbacks)  # the 3rd judgment
    [first] = runs()
    assert first.status == "queued" and first.kind == "reward" and first.created_by == manager
    assert first.dataset.version == 1 and first.config["max_steps"] == 6
    assert "(rule " in first.log_lines.get().message
    rule.refresh_from_db()
    assert rule.last_fired_count == 3

    for _ in range(3):  # the 6th judgment passes the next threshold, but the first run is still queued
        _judge_one(campaign, annotator, django_capture_on_commit_callbacks)
    assert len(runs()) == 1 and Dataset.objects.filter(campaign=campaign).count() == 1

    training_run_cancel(run=first, by=manager)
    _judge_one(campaign, annotator, django_capture_on_commit_callbacks)  # 7th: the run has ended, fire now
    assert len(runs()) == 2
    second = runs()[-1]
    assert second.dataset.version == 2 and second.status == "queued"
    rule.refresh_from_db()
    assert rule.last_fired_count == 7

    training_run_cancel(run=second, by=manager)
    _judge_one(campaign, annotator, django_capture_on_commit_callbacks)  # 8th: next threshold is 10
    _judge_one(campaign, annotator, django_capture_on_commit_callbacks)
    assert len(runs()) == 2
    _judge_one(campaign, annotator, django_capture_on_commit_callbacks)  # 10th
    assert len(runs()) == 3
    # Each queued run sent one task (to the private broker), after its commit.
    assert len(list(Path(broker["data_folder_in"]).glob("*.training.msg"))) == 3


def test_firing_twice_at_one_count_queues_one_run(training_settings, broker, campaign, manager, tiny_models):
    """Two submits racing past the threshold: the rule's row lock lets one of them fire."""
    rule = _rule(campaign, manager, tiny_models)
    first = training_rules_fire(campaign_id=campaign.pk, kind=rule.kind, count=3)
    again = training_rules_fire(campaign_id=campaign.pk, kind=rule.kind, count=3)
    later = training_rules_fire(campaign_id=campaign.pk, kind=rule.kind, count=9)  # run 1 still queued
    assert len(first) == 1 and again == [] and later == []


def test_on_close_trains_on_a_fresh_snapshot(
    training_settings, broker, campaign, manager, annotator, tiny_models, django_capture_on_commit_callbacks
):
    """Closing the campaign queues one run; its worker builds the snapshot first, then trains on it."""
    rule = _rule(campaign, manager, tiny_models, kind="on_close", n=None)
    for _ in range(12):
        _judge_one(campaign, annotator, django_capture_on_commit_callbacks)
    assert not TrainingRun.objects.exists()  # an on-close rule ignores judgments
    with django_capture_on_commit_callbacks(execute=True):  # the build task goes to the private broker
        campaign_set_status(campaign=campaign, status=Campaign.Status.CLOSED, actor=manager)
    run = TrainingRun.objects.get(rule=rule)
    assert run.dataset.status == "building"
    run = training_run_execute(run_id=run.pk, task_id=run.celery_task_id)
    assert run.status == "succeeded", run.error
    run.dataset.refresh_from_db()
    assert run.dataset.status == "ready" and run.summary["counts"]["pairs"] == 12
    assert run.log_lines.filter(message=f"Building dataset v{run.dataset.version} first.").exists()


def test_a_rule_that_cannot_start_says_why_and_the_judgment_is_kept(
    training_settings, broker, campaign, manager, annotator, tiny_models, tmp_path, django_capture_on_commit_callbacks
):
    rule = _rule(campaign, manager, tiny_models, n=1)
    training_settings.ARBITER_MODEL_ROOTS = [tmp_path / "elsewhere"]  # the base model is no longer allowed
    _judge_one(campaign, annotator, django_capture_on_commit_callbacks)
    assert Judgment.objects.filter(campaign=campaign).count() == 1
    assert not TrainingRun.objects.exists() and not Dataset.objects.filter(campaign=campaign).exists()
    rule.refresh_from_db()
    assert rule.last_error.startswith("base_model_path: The model path ")
    assert "is outside the model roots" in rule.last_error and rule.last_fired_count == 0


def test_a_campaign_without_rules_schedules_nothing_after_a_judgment(
    training_settings, campaign, manager, annotator, tiny_models, monkeypatch
):
    """The submit reads the campaign's `announce_judgments` flag in the statement that locks the
    assignment: nothing more without an every-N rule; the rule's service sets the flag."""
    from annotation import hooks

    calls = []
    monkeypatch.setattr(hooks, "judgment_recorded", lambda **kw: calls.append(kw))
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    judgment_submit(assignment_id=a.pk, annotator=annotator,
                    answer={"outcome": "preferred", "preferred_response_id": a.display_order[0], "strength": 2})
    assert calls == []
    _rule(campaign, manager, tiny_models, n=100)
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    judgment_submit(assignment_id=a.pk, annotator=annotator,
                    answer={"outcome": "preferred", "preferred_response_id": a.display_order[0], "strength": 2})
    assert calls == [{"campaign_id": campaign.pk}]


def test_training_listens_through_annotation_hooks():
    """Annotation imports nothing from training: training registers its triggers in ready()."""
    from annotation import hooks

    assert training_rules_after_judgment in hooks._judgment_recorded
    assert training_rules_on_close in hooks._campaign_closed


def test_the_campaign_announces_judgments_exactly_while_it_has_an_active_every_n_rule(
    training_settings, campaign, manager, tiny_models
):
    def announces() -> bool:
        return Campaign.objects.values_list("announce_judgments", flat=True).get(pk=campaign.pk)

    assert not announces()
    on_close = _rule(campaign, manager, tiny_models, kind="on_close", n=None)
    assert not announces()
    every_n = _rule(campaign, manager, tiny_models)
    assert announces()
    training_rule_update(rule=every_n, actor=manager, is_active=False)
    assert not announces()
    training_rule_update(rule=every_n, actor=manager, is_active=True)
    assert announces()
    training_rule_update(rule=every_n, actor=manager, kind="on_close")
    assert not announces()
    training_rule_update(rule=on_close, actor=manager, kind="every_n_judgments", n=5)
    assert announces()
    training_rule_delete(rule=on_close, actor=manager)
    assert not announces()


def test_the_migration_sets_the_flag_for_existing_active_every_n_rules(campaign, make_campaign, manager):
    import importlib

    from django.apps import apps

    other = make_campaign(name="Other")
    for c, kind, active in ((campaign, "every_n_judgments", True), (other, "every_n_judgments", False),
                            (other, "on_close", True)):
        TrainingRule.objects.create(campaign=c, kind=kind, n=3, created_by=manager, is_active=active)
    importlib.import_module("training.migrations.0002_campaign_announce_judgments").set_flags(apps, None)
    flags = dict(Campaign.objects.values_list("pk", "announce_judgments"))
    assert flags == {campaign.pk: True, other.pk: False}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n: must be a whole number of judgments >= 1, got 0"),
        ({"kind": "hourly"}, "kind: must be one of every_n_judgments, on_close"),
        ({"config": {"learning_rate": -1}}, "config.learning_rate: `learning_rate` must be > 0 and < 1, got -1."),
        ({"dataset_method": "vote"}, "dataset_method: must be one of majority, dawid_skene, reliability_weighted"),
        ({"base_model_path": "gpt2"}, "base_model_path: 'gpt2' looks like a Hugging Face Hub id"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field(training_settings, campaign, manager, tiny_models, kwargs, message):
    with pytest.raises(ApplicationError) as caught:
        _rule(campaign, manager, tiny_models, **kwargs)
    assert caught.value.message.startswith(message), caught.value.message
    assert not TrainingRule.objects.exists()


def test_only_managers_create_rules(training_settings, campaign, researcher, tiny_models):
    from annotation.models import Role
    from annotation.services.campaigns import membership_add

    membership_add(campaign=campaign, user=researcher, role=Role.RESEARCHER)
    with pytest.raises(ApplicationError, match="Only the campaign's managers create and change its training rules."):
        _rule(campaign, researcher, tiny_models)
