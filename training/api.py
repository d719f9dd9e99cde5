"""REST API of training runs and of campaigns' training rules, under /api/v1/training/: one view
per operation.

Who may do what is decided by `training.selectors`: staff and the managers of the run's campaign
start, cancel and resume runs; its researchers read them and score with them; anyone else gets
404. A campaign's training rules are its managers' (and staff's): its researchers get 403, anyone
else 404. Views therefore only require a login, and let the selectors answer per object.
"""

from __future__ import annotations

import functools
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.api.schema import ERROR
from annotation.errors import ConflictError, field_error
from annotation.models import Dataset
from training.models import TrainingLogLine, TrainingMetric, TrainingRule, TrainingRun
from training.rules import training_rule_create, training_rule_delete, training_rule_update
from training.selectors import (
    training_campaign_get_for_user,
    training_dataset_get_for_user,
    training_rule_campaign_get_for_user,
    training_rule_get_for_user,
    training_rule_runs,
    training_rules_for_campaign,
    training_run_get_for_user,
    training_run_list_for_user,
    training_run_log,
    training_run_metrics,
)
from training.services import training_run_cancel, training_run_create, training_run_resume

MAX_SCORE_PAIRS = 256
LOG_LINES_SHOWN = 500


class TrainingRunOutputSerializer(serializers.ModelSerializer):
    dataset_version = serializers.IntegerField(
        source="dataset.version", allow_null=True, default=None
    )
    campaign_name = serializers.CharField(source="campaign.name", allow_null=True, default=None)
    created_by = serializers.CharField(source="created_by.get_username")
    progress = serializers.FloatField()

    class Meta:
        model = TrainingRun
        fields = [
            "id", "kind", "status", "dataset", "dataset_version", "campaign", "campaign_name", "rule",
            "base_model_path", "config", "gpus", "step", "total_steps", "progress", "summary", "artifacts",
            "error", "cancel_requested", "created_by", "queued_at", "started_at", "finished_at", "heartbeat_at",
        ]  # fmt: skip
        ref_name = "TrainingRun"


class TrainingMetricSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingMetric
        fields = ["id", "step", "split", "values"]


class TrainingLogLineSerializer(serializers.ModelSerializer):
    at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = TrainingLogLine
        fields = ["id", "at", "level", "message"]


def run_state(run: TrainingRun, *, metrics_after: int = 0, log_after: int = 0) -> dict[str, Any]:
    """Return the run, its metric rows and log lines (newer than the given ids), as the API and live page show them."""
    log_limit = None if log_after else LOG_LINES_SHOWN
    return {
        "run": TrainingRunOutputSerializer(run).data,
        "metrics": TrainingMetricSerializer(
            training_run_metrics(run=run, after_id=metrics_after), many=True
        ).data,
        "log": TrainingLogLineSerializer(
            training_run_log(run=run, after_id=log_after, limit=log_limit), many=True
        ).data,
    }


class TrainingRunListApi(APIView):
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=TrainingRun.Status.choices, required=False)
        limit = serializers.IntegerField(min_value=1, max_value=500, default=100)

        class Meta:
            ref_name = "TrainingRunListInput"

    @extend_schema(parameters=[InputSerializer], responses={200: TrainingRunOutputSerializer(many=True)},
                   summary="Training runs you may read, newest first")  # fmt: skip
    def get(self, request: Request) -> Response:
        s = self.InputSerializer(data=request.query_params)
        s.is_valid(raise_exception=True)
        runs = training_run_list_for_user(user=request.user)
        if "status" in s.validated_data:
            runs = runs.filter(status=s.validated_data["status"])
        return Response(
            TrainingRunOutputSerializer(runs[: s.validated_data["limit"]], many=True).data
        )


class TrainingRunCreateApi(APIView):
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(
            choices=TrainingRun.Kind.choices, default=TrainingRun.Kind.REWARD
        )
        dataset_id = serializers.IntegerField(
            required=False, help_text="The dataset snapshot to train on (reward model, DPO)."
        )
        campaign_id = serializers.IntegerField(
            required=False,
            help_text="For kinds that train on a campaign's prompts (PPO) instead of a snapshot.",
        )
        base_model_path = serializers.CharField(
            help_text="A model folder under ARBITER_MODEL_ROOTS."
        )
        config = serializers.JSONField(
            required=False, default=dict,
            help_text="The kind's settings; each has a default (see the run's `config` once created).",
        )  # fmt: skip
        gpus = serializers.IntegerField(min_value=0, max_value=64, default=0)

        class Meta:
            ref_name = "TrainingRunCreateInput"

    @extend_schema(request=InputSerializer, responses={201: TrainingRunOutputSerializer, 400: ERROR, 403: ERROR, 404: ERROR},
                   summary="Queue a training run on a dataset snapshot")  # fmt: skip
    def post(self, request: Request) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        data = s.validated_data
        dataset, campaign = None, None
        if "dataset_id" in data:
            dataset = training_dataset_get_for_user(
                user=request.user, dataset_id=data["dataset_id"]
            )
        elif "campaign_id" in data:
            campaign = training_campaign_get_for_user(
                user=request.user, campaign_id=data["campaign_id"]
            )
        else:
            raise field_error(
                "dataset_id", "give the dataset snapshot to train on (or campaign_id for PPO)"
            )
        run = training_run_create(
            kind=data["kind"], dataset=dataset, campaign=campaign, base_model_path=data["base_model_path"],
            config=data["config"], gpus=data["gpus"], created_by=request.user,
        )  # fmt: skip
        return Response(TrainingRunOutputSerializer(run).data, status=status.HTTP_201_CREATED)


class TrainingRunDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    class OutputSerializer(serializers.Serializer):
        run = TrainingRunOutputSerializer()
        metrics = TrainingMetricSerializer(many=True)
        log = TrainingLogLineSerializer(many=True)

        class Meta:
            ref_name = "TrainingRunDetail"

    @extend_schema(responses={200: OutputSerializer, 404: ERROR},
                   summary="One run: progress, every logged metric, the last 500 log lines")  # fmt: skip
    def get(self, request: Request, run_id: int) -> Response:
        run = training_run_get_for_user(user=request.user, run_id=run_id)
        return Response(run_state(run))


class TrainingRunCancelApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={200: TrainingRunOutputSerializer, 403: ERROR, 404: ERROR, 409: ERROR},
                   summary="Cancel a queued run, or stop a running one at its next step (with a checkpoint)")  # fmt: skip
    def post(self, request: Request, run_id: int) -> Response:
        run = training_run_get_for_user(user=request.user, run_id=run_id, manage=True)
        run = training_run_cancel(run=run, by=request.user)
        return Response(TrainingRunOutputSerializer(run).data)


class TrainingRunResumeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={200: TrainingRunOutputSerializer, 403: ERROR, 404: ERROR, 409: ERROR},
                   summary="Queue a failed or cancelled run again, from its last checkpoint")  # fmt: skip
    def post(self, request: Request, run_id: int) -> Response:
        run = training_run_get_for_user(user=request.user, run_id=run_id, manage=True)
        run = training_run_resume(run=run, by=request.user)
        return Response(TrainingRunOutputSerializer(run).data)


class TrainingRunScoreApi(APIView):
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        class Pair(serializers.Serializer):
            prompt = serializers.JSONField(
                help_text="The conversation: a list of {role, content}, or one user message as a string."
            )
            response = serializers.CharField(allow_blank=True, trim_whitespace=False)

            class Meta:
                ref_name = "ScorePair"

        pairs = Pair(many=True, allow_empty=False, max_length=MAX_SCORE_PAIRS)

        class Meta:
            ref_name = "TrainingRunScoreInput"

    class OutputSerializer(serializers.Serializer):
        run_id = serializers.IntegerField()
        scores = serializers.ListField(child=serializers.FloatField())

        class Meta:
            ref_name = "TrainingRunScores"

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer, 400: ERROR, 404: ERROR, 409: ERROR},
                   summary="Score (prompt, response) pairs with a succeeded reward-model run (raw rewards, in order)")  # fmt: skip
    def post(self, request: Request, run_id: int) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        run = training_run_get_for_user(user=request.user, run_id=run_id)
        if run.kind != TrainingRun.Kind.REWARD or run.status != TrainingRun.Status.SUCCEEDED:
            raise ConflictError(
                f"Only a succeeded reward-model run scores; this is a {run.get_kind_display().lower()} run that is {run.status}.",
                extra={"status": run.status, "kind": run.kind},
            )
        pairs = [
            (_prompt(pair["prompt"], i), pair["response"])
            for i, pair in enumerate(s.validated_data["pairs"])
        ]
        from training.formatting import FormatError

        try:
            scores = scorer_for(run.artifacts["model"]).score(pairs)
        except FormatError as exc:
            raise field_error("pairs", str(exc)) from exc
        return Response(self.OutputSerializer({"run_id": run.pk, "scores": scores}).data)


def _prompt(value: Any, index: int) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value
    ):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise field_error(
        f"pairs[{index}].prompt", "must be a list of {role, content} messages, or a string"
    )


@functools.lru_cache(maxsize=2)
def scorer_for(model_dir: str):
    """Return the loaded reward model of a run (kept for the next request: artifacts never change)."""
    from training.scoring import load_scorer

    return load_scorer(model_dir)


# --- Training rules of a campaign: its managers (and superusers) list, create, change and delete them --


class TrainingRuleRunSerializer(serializers.ModelSerializer):
    dataset_version = serializers.IntegerField(
        source="dataset.version", allow_null=True, default=None
    )

    class Meta:
        model = TrainingRun
        fields = ["id", "status", "dataset_version", "step", "total_steps", "queued_at"]
        ref_name = "TrainingRuleRun"


class TrainingRuleOutputSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.get_username")
    next_at = serializers.SerializerMethodField(
        help_text="The judgment count at which an every-N rule fires next (null for on-close rules)."
    )
    run_count = serializers.IntegerField(help_text="Runs the rule has started.")
    last_run_at = serializers.DateTimeField(
        allow_null=True, help_text="When the rule last started a run."
    )
    recent_runs = TrainingRuleRunSerializer(many=True, help_text="Its newest runs, newest first.")

    class Meta:
        model = TrainingRule
        fields = [
            "id", "campaign", "kind", "n", "next_at", "dataset_method", "dataset_params", "base_model_path",
            "config", "gpus", "is_active", "last_fired_count", "last_error", "created_by", "created_at",
            "run_count", "last_run_at", "recent_runs",
        ]  # fmt: skip
        ref_name = "TrainingRule"

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_next_at(self, rule: TrainingRule) -> int | None:
        if rule.kind != TrainingRule.Kind.EVERY_N_JUDGMENTS or rule.n is None:
            return None
        return rule.last_fired_count + rule.n


def rules_with_runs(*, campaign_id: int, rule_id: int | None = None) -> list[TrainingRule]:
    """Return the campaign's rules (or the one asked for), each with its counts and newest runs."""
    rules = training_rules_for_campaign(campaign_id=campaign_id)
    if rule_id is not None:
        rules = rules.filter(pk=rule_id)
    rules = list(rules)
    runs = training_rule_runs(rules=rules)
    for rule in rules:
        rule.recent_runs = runs[rule.pk]
    return rules


def _rule_data(rule: TrainingRule) -> dict[str, Any]:
    [fresh] = rules_with_runs(campaign_id=rule.campaign_id, rule_id=rule.pk)
    return TrainingRuleOutputSerializer(fresh).data


class TrainingRuleListApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: TrainingRuleOutputSerializer(many=True), 403: ERROR, 404: ERROR},
                   summary="A campaign's training rules, with the runs they started")  # fmt: skip
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = training_rule_campaign_get_for_user(user=request.user, campaign_id=campaign_id)
        return Response(
            TrainingRuleOutputSerializer(rules_with_runs(campaign_id=campaign.pk), many=True).data
        )


class TrainingRuleCreateApi(APIView):
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=TrainingRule.Kind.choices)
        n = serializers.IntegerField(
            min_value=1, required=False, allow_null=True,
            help_text="Judgments between runs; required for every_n_judgments.",
        )  # fmt: skip
        base_model_path = serializers.CharField(
            help_text="A model folder under ARBITER_MODEL_ROOTS."
        )
        config = serializers.JSONField(
            required=False, default=dict,
            help_text="Reward-model settings; each has a default (output_dir is set per run).",
        )  # fmt: skip
        dataset_method = serializers.ChoiceField(
            choices=Dataset.Method.choices, default=Dataset.Method.DAWID_SKENE,
            help_text="How each snapshot aggregates the judgments.",
        )  # fmt: skip
        dataset_params = serializers.JSONField(required=False, default=dict)
        gpus = serializers.IntegerField(min_value=0, max_value=64, default=0)
        is_active = serializers.BooleanField(default=True)

        class Meta:
            ref_name = "TrainingRuleCreateInput"

    @extend_schema(request=InputSerializer, responses={201: TrainingRuleOutputSerializer, 400: ERROR, 403: ERROR, 404: ERROR},
                   summary="Create a rule: train a reward model every N judgments, or when the campaign closes")  # fmt: skip
    def post(self, request: Request, campaign_id: int) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        campaign = training_rule_campaign_get_for_user(user=request.user, campaign_id=campaign_id)
        rule = training_rule_create(campaign=campaign, created_by=request.user, **s.validated_data)
        return Response(_rule_data(rule), status=status.HTTP_201_CREATED)


class TrainingRuleDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: TrainingRuleOutputSerializer, 403: ERROR, 404: ERROR},
                   summary="One training rule, with the runs it started")  # fmt: skip
    def get(self, request: Request, rule_id: int) -> Response:
        rule = training_rule_get_for_user(user=request.user, rule_id=rule_id)
        return Response(_rule_data(rule))


class TrainingRuleUpdateApi(APIView):
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=TrainingRule.Kind.choices, required=False)
        n = serializers.IntegerField(min_value=1, required=False, allow_null=True)
        base_model_path = serializers.CharField(required=False)
        config = serializers.JSONField(
            required=False, help_text="The whole reward-model config (replaces it)."
        )
        dataset_method = serializers.ChoiceField(choices=Dataset.Method.choices, required=False)
        dataset_params = serializers.JSONField(required=False)
        gpus = serializers.IntegerField(min_value=0, max_value=64, required=False)
        is_active = serializers.BooleanField(
            required=False, help_text="false switches the rule off."
        )

        class Meta:
            ref_name = "TrainingRuleUpdateInput"

    @extend_schema(request=InputSerializer, responses={200: TrainingRuleOutputSerializer, 400: ERROR, 403: ERROR, 404: ERROR},
                   summary="Change a rule's fields given (switch it on or off with is_active)")  # fmt: skip
    def post(self, request: Request, rule_id: int) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        rule = training_rule_get_for_user(user=request.user, rule_id=rule_id)
        rule = training_rule_update(rule=rule, actor=request.user, **s.validated_data)
        return Response(_rule_data(rule))


class TrainingRuleDeleteApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None, 403: ERROR, 404: ERROR},
                   summary="Delete a rule (the runs it started stay)")  # fmt: skip
    def post(self, request: Request, rule_id: int) -> Response:
        rule = training_rule_get_for_user(user=request.user, rule_id=rule_id)
        training_rule_delete(rule=rule, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
