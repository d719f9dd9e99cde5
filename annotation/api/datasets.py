"""REST API v1, datasets: snapshot, read, leaderboard, card, and the streamed exports.

Managers and researchers of the campaign read; only its managers create. Annotators get 403,
non-members 404, as for campaigns.
"""

import json
from types import SimpleNamespace

from django.http import HttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import exports
from annotation.api.schema import ERROR
from annotation.core.snapshot import DEFAULT_METHOD, DEFAULT_METHOD_REASON, PARAMS
from annotation.errors import ConflictError, NotFoundError, field_error
from annotation.models import Dataset, Role
from annotation.permissions import IsAnyRole, IsManager
from annotation.selectors import (
    campaign_get_for_user,
    dataset_get_for_user,
    dataset_list_for_campaign,
)
from annotation.services.datasets import dataset_create

READERS = (Role.MANAGER, Role.RESEARCHER)


class _HeldBack(serializers.Serializer):
    tie = serializers.IntegerField()
    too_few_judgments = serializers.IntegerField()
    below_confidence = serializers.IntegerField()


class _FlaggedItem(serializers.Serializer):
    item_id = serializers.IntegerField()
    flags = serializers.DictField(child=serializers.IntegerField(), help_text="Flag -> annotators who raised it")
    annotators = serializers.IntegerField()


class _Flagged(serializers.Serializer):
    min_annotators = serializers.IntegerField()
    kept = serializers.BooleanField(help_text="True: flagged items stay in the training exports (keep_flagged)")
    decided_pairs = serializers.IntegerField(help_text="Decided pairs of the flagged items")
    items = _FlaggedItem(many=True)


class DatasetOutputSerializer(serializers.ModelSerializer):
    counts = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.get_username")
    held_back = serializers.SerializerMethodField(
        help_text="Pairs that are not decided pairs, by reason (null for a dataset built before they were counted)"
    )
    flagged = serializers.SerializerMethodField(
        help_text="Items flagged unsafe, private data or broken by at least flag_min_annotators annotators"
    )

    class Meta:
        model = Dataset
        fields = [
            "id", "campaign", "version", "method", "params", "status", "error", "content_hash", "counts",
            "campaign_version", "last_judgment_id", "created_by", "created_at", "finished_at", "held_back", "flagged",
        ]

    @extend_schema_field(_HeldBack(allow_null=True))
    def get_held_back(self, obj: Dataset):
        return (obj.stats or {}).get("held_back")

    @extend_schema_field(_Flagged(allow_null=True))
    def get_flagged(self, obj: Dataset):
        return (obj.stats or {}).get("flagged")

    def get_counts(self, obj: Dataset) -> dict[str, int]:
        return {"items": obj.item_count, "comparisons": obj.comparison_count, "judgments": obj.judgment_count,
                "annotators": obj.annotator_count}


class DatasetListApi(APIView):
    permission_classes = [IsAnyRole]

    @extend_schema(responses={200: DatasetOutputSerializer(many=True), 403: ERROR, 404: ERROR},
                   summary="Datasets of a campaign, newest first")
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=READERS)
        return Response(DatasetOutputSerializer(dataset_list_for_campaign(campaign=campaign), many=True).data)


class DatasetCreateApi(APIView):
    permission_classes = [IsManager]

    class InputSerializer(serializers.Serializer):
        method = serializers.ChoiceField(choices=Dataset.Method.choices, default=DEFAULT_METHOD,
                                         help_text=DEFAULT_METHOD_REASON)
        params = serializers.JSONField(
            required=False, default=dict,
            help_text="Aggregation parameters; every one has a default (the dataset's `params` show them all once "
            "created). A pair is exported as a preference only if at least `min_judgments` judgments agree with "
            "the winner and its confidence is at least `min_confidence`; otherwise its row is `undecided` "
            "(margin 0), which no training export reads. " + "; ".join(
                f"`{name}`: {p.expect}, default {json.dumps(p.default)}"
                + ("" if len(p.methods) == 3 else f" ({', '.join(p.methods)} only)")
                for name, p in sorted(PARAMS.items())
            ) + ". `min_judgments` defaults to 1 on a campaign of overlap 1.",
        )

        class Meta:
            ref_name = "DatasetCreateInput"  # the schema's component name; nested names collide

    @extend_schema(request=InputSerializer, responses={201: DatasetOutputSerializer, 400: ERROR, 403: ERROR},
                   summary="Snapshot the campaign's judgments as the next dataset version (built in the background)")
    def post(self, request: Request, campaign_id: int) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        dataset = dataset_create(campaign=campaign, created_by=request.user, **s.validated_data)
        return Response(DatasetOutputSerializer(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailApi(APIView):
    permission_classes = [IsAnyRole]

    class OutputSerializer(DatasetOutputSerializer):
        class Meta(DatasetOutputSerializer.Meta):
            fields = [*DatasetOutputSerializer.Meta.fields, "stats", "leaderboard"]
            ref_name = "DatasetDetail"

    @extend_schema(responses={200: OutputSerializer, 403: ERROR, 404: ERROR},
                   summary="One dataset: counts, quality statistics, leaderboard")
    def get(self, request: Request, dataset_id: int) -> Response:
        dataset = dataset_get_for_user(user=request.user, dataset_id=dataset_id, roles=READERS)
        return Response(self.OutputSerializer(dataset).data)


class DatasetLeaderboardApi(APIView):
    permission_classes = [IsAnyRole]

    class OutputSerializer(serializers.Serializer):
        class Row(serializers.Serializer):
            model = serializers.CharField()
            score = serializers.FloatField()
            ci_low = serializers.FloatField()
            ci_high = serializers.FloatField()
            rank = serializers.IntegerField()
            n = serializers.IntegerField()

            class Meta:
                ref_name = "LeaderboardRow"

        dataset_id = serializers.IntegerField()
        ties = serializers.CharField()
        confidence = serializers.FloatField()
        bootstrap_rounds = serializers.IntegerField()
        prior = serializers.FloatField()
        note = serializers.CharField(allow_blank=True)
        rows = Row(many=True)

        class Meta:
            ref_name = "DatasetLeaderboard"

    @extend_schema(responses={200: OutputSerializer, 403: ERROR, 404: ERROR, 409: ERROR},
                   summary="Bradley–Terry leaderboard of a dataset (Elo scale, 95% bootstrap intervals)")
    def get(self, request: Request, dataset_id: int) -> Response:
        dataset = _ready(dataset_get_for_user(user=request.user, dataset_id=dataset_id, roles=READERS))
        return Response(self.OutputSerializer({"dataset_id": dataset.pk, **dataset.leaderboard}).data)


class _FileFormatNegotiation(DefaultContentNegotiation):
    """On download views `?format=` names the file format (jsonl | parquet), not a DRF renderer."""

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)


FORMAT_PARAM = OpenApiParameter(
    "format", str, OpenApiParameter.QUERY, enum=list(exports.FORMATS), default="jsonl",
    description="jsonl (streamed JSON Lines) or parquet",
)
FILE_RESPONSES = {
    (200, exports.CONTENT_TYPES["jsonl"]): OpenApiTypes.BINARY,
    (200, exports.CONTENT_TYPES["parquet"]): OpenApiTypes.BINARY,
    (400, "application/json"): ERROR, (403, "application/json"): ERROR, (404, "application/json"): ERROR,
    (409, "application/json"): ERROR,
}


def _file_format(request: Request) -> str:
    fmt = request.query_params.get("format", "jsonl")
    if fmt not in exports.FORMATS:
        raise field_error("format", f"must be one of {', '.join(exports.FORMATS)}")
    return fmt


def _ready(dataset: Dataset) -> Dataset:
    if dataset.status != Dataset.Status.READY:
        raise ConflictError(
            f"Dataset v{dataset.version} is {dataset.status}"
            + (f": {dataset.error}" if dataset.error else "; try again when it is ready."),
            extra={"status": dataset.status},
        )
    return dataset


class DatasetExportApi(APIView):
    permission_classes = [IsAnyRole]
    content_negotiation_class = _FileFormatNegotiation

    @extend_schema(
        parameters=[FORMAT_PARAM, OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=list(exports.KINDS))],
        responses=FILE_RESPONSES,
        summary="Download one export of a dataset, streamed (TRL preference, implicit, KTO, prompt-only, SFT, ...)",
    )
    def get(self, request: Request, dataset_id: int, kind: str) -> HttpResponseBase:
        fmt = _file_format(request)
        if kind not in exports.KINDS:
            raise NotFoundError(f"No export called {kind!r}; use one of {', '.join(exports.KINDS)}.",
                                extra={"kinds": list(exports.KINDS)})
        dataset = _ready(dataset_get_for_user(user=request.user, dataset_id=dataset_id, roles=READERS))
        return exports.dataset_export_response(request._request, dataset, kind, fmt)


class DatasetCardApi(APIView):
    permission_classes = [IsAnyRole]

    @extend_schema(responses={(200, "text/markdown"): OpenApiTypes.STR, 403: ERROR, 404: ERROR},
                   summary="The dataset card (README.md): provenance, method, counts, quality, formats, license")
    def get(self, request: Request, dataset_id: int) -> HttpResponseBase:
        dataset = dataset_get_for_user(user=request.user, dataset_id=dataset_id, roles=READERS)
        response = HttpResponse(exports.dataset_card(dataset), content_type="text/markdown; charset=utf-8")
        response["Content-Disposition"] = 'inline; filename="README.md"'
        return response


class CampaignJudgmentsExportApi(APIView):
    permission_classes = [IsAnyRole]
    content_negotiation_class = _FileFormatNegotiation

    @extend_schema(parameters=[FORMAT_PARAM], responses=FILE_RESPONSES,
                   summary="Download every judgment of a campaign as it stands now (pseudonymous annotators)")
    def get(self, request: Request, campaign_id: int) -> HttpResponseBase:
        fmt = _file_format(request)
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=READERS)
        return exports.campaign_judgments_response(request._request, campaign, fmt)
