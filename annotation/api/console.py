"""REST API v1, the manager's console: settings, versions, closing, import check, items, audit.

Managers of the campaign only: IsManager refuses other global roles (403) before the campaign
lookup, which refuses non-members (404).
"""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.api.campaigns import (
    SKIP_DUPLICATES_HELP,
    CampaignOutputSerializer,
    LineNoteSerializer,
)
from annotation.api.datasets import DatasetOutputSerializer
from annotation.api.judging import MessageSerializer
from annotation.api.schema import ERROR
from annotation.errors import field_error
from annotation.models import Campaign, Dataset, Role
from annotation.permissions import IsManager
from annotation.selectors import (
    AUDIT_PER_PAGE,
    ITEM_FILTERS,
    campaign_get_for_user,
    item_page_for_campaign,
)
from annotation.services.audit import audit_list_for_campaign
from annotation.services.campaigns import (
    COPY_ITEMS,
    campaign_close_into_dataset,
    campaign_new_version,
    campaign_update,
)
from annotation.services.imports import items_parse


class _CampaignFieldsInput(serializers.Serializer):
    """Every field optional: what is left out stays as it is."""

    name = serializers.CharField(max_length=200, required=False)
    instructions = serializers.CharField(required=False, allow_blank=True)
    overlap = serializers.IntegerField(min_value=1, max_value=100, required=False)
    lease_seconds = serializers.IntegerField(min_value=30, required=False)
    gold_rate = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    kind = serializers.ChoiceField(choices=Campaign.Kind.choices, required=False)
    criteria = serializers.JSONField(required=False, help_text="[{name, label, description, scale}]")
    allow_ties = serializers.BooleanField(required=False)
    allow_both_bad = serializers.BooleanField(required=False)
    use_strength = serializers.BooleanField(required=False)
    require_rationale = serializers.BooleanField(required=False)
    allow_editing = serializers.BooleanField(required=False)


class CampaignUpdateApi(APIView):
    permission_classes = [IsManager]

    class InputSerializer(_CampaignFieldsInput):
        pass

    @extend_schema(request=InputSerializer, responses={200: CampaignOutputSerializer, 400: ERROR, 409: ERROR},
                   summary="Change settings; the schema (kind, criteria, options) only while nothing is judged")
    def post(self, request: Request, campaign_id: int) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        campaign = campaign_update(campaign=campaign, actor=request.user, **s.validated_data)
        return Response(CampaignOutputSerializer(campaign).data)


class CampaignNewVersionApi(APIView):
    permission_classes = [IsManager]

    class InputSerializer(_CampaignFieldsInput):
        copy_items = serializers.ChoiceField(choices=list(COPY_ITEMS), default="unjudged",
                                             help_text="Which items the new version carries over.")

    @extend_schema(request=InputSerializer, responses={201: CampaignOutputSerializer, 400: ERROR, 409: ERROR},
                   summary="Start the next version of a campaign (a changed schema); this one is closed")
    def post(self, request: Request, campaign_id: int) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        new = campaign_new_version(campaign=campaign, actor=request.user, **s.validated_data)
        return Response(CampaignOutputSerializer(new).data, status=status.HTTP_201_CREATED)


class CampaignCloseIntoDatasetApi(APIView):
    permission_classes = [IsManager]

    class InputSerializer(serializers.Serializer):
        method = serializers.ChoiceField(choices=Dataset.Method.choices, default=Dataset.Method.DAWID_SKENE)
        params = serializers.JSONField(required=False, default=dict, help_text="Aggregation parameters.")

    @extend_schema(request=InputSerializer, responses={201: DatasetOutputSerializer, 400: ERROR, 409: ERROR},
                   summary="Close the campaign and snapshot it as its next dataset version, in one step")
    def post(self, request: Request, campaign_id: int) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        dataset = campaign_close_into_dataset(campaign=campaign, actor=request.user, **s.validated_data)
        return Response(DatasetOutputSerializer(dataset).data, status=status.HTTP_201_CREATED)


class CampaignImportValidateApi(APIView):
    permission_classes = [IsManager]
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(help_text="JSONL: Arbiter's format, TRL preference rows or HH transcripts.")
        format = serializers.ChoiceField(choices=["auto", "arbiter", "trl", "hh"], default="auto")
        skip_duplicates = serializers.BooleanField(default=False, help_text=SKIP_DUPLICATES_HELP)

    class OutputSerializer(serializers.Serializer):
        ok = serializers.BooleanField()
        message = serializers.CharField()
        lines = serializers.IntegerField()
        items = serializers.IntegerField()
        formats = serializers.DictField(child=serializers.IntegerField())
        error_count = serializers.IntegerField()
        errors = LineNoteSerializer(many=True)
        skipped_count = serializers.IntegerField()
        skipped = LineNoteSerializer(many=True)
        warning_count = serializers.IntegerField()
        warnings = LineNoteSerializer(many=True)
        near_duplicate_rule = serializers.CharField()

    @extend_schema(
        request={"multipart/form-data": InputSerializer}, responses={200: OutputSerializer, 400: ERROR},
        summary="Check a JSONL file against the campaign and report every bad line; nothing is stored",
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        upload = s.validated_data["file"]
        if upload.size > settings.ARBITER_IMPORT_MAX_BYTES:
            raise field_error("file", f"is larger than the {settings.ARBITER_IMPORT_MAX_BYTES} byte limit")
        report = items_parse(campaign=campaign, lines=upload.open("rb"), format=s.validated_data["format"],
                             skip_duplicates=s.validated_data["skip_duplicates"])
        return Response(self.OutputSerializer({
            "ok": report.ok, "message": report.summary(), "lines": report.lines, "items": len(report.records),
            "formats": dict(report.formats), "error_count": report.error_count, "errors": report.errors,
            "skipped_count": report.skipped_count, "skipped": report.skipped,
            "warning_count": report.warning_count, "warnings": report.warnings,
            "near_duplicate_rule": report.near_duplicate_rule,
        }).data)


PAGE_PARAM = OpenApiParameter("page", int, OpenApiParameter.QUERY, description="1-based page number")


class CampaignItemListApi(APIView):
    permission_classes = [IsManager]

    class OutputSerializer(serializers.Serializer):
        class ItemRow(serializers.Serializer):
            class ResponseRow(serializers.Serializer):
                id = serializers.IntegerField()
                position = serializers.IntegerField()
                content = serializers.CharField(allow_blank=True)
                model = serializers.CharField(allow_blank=True)

            class JudgmentRow(serializers.Serializer):
                id = serializers.IntegerField()
                annotator = serializers.CharField()
                outcome = serializers.CharField()
                preferred_response_id = serializers.IntegerField(allow_null=True)
                strength = serializers.IntegerField(allow_null=True)
                answer = serializers.JSONField()
                rationale = serializers.CharField(allow_blank=True)
                excluded = serializers.BooleanField()
                superseded = serializers.BooleanField()
                created_at = serializers.DateTimeField()

            class Consensus(serializers.Serializer):
                order = serializers.ListField(child=serializers.IntegerField(), help_text="Response ids, best first")
                tie = serializers.BooleanField()
                agreement = serializers.FloatField(help_text="The consensus confidence (mean over a ranking's pairs)")
                judgments = serializers.IntegerField()
                outcome = serializers.ChoiceField(
                    ["chosen", "tie", "undecided", "ranked"],
                    help_text="A pairwise item's decision, as a dataset built now with the default settings "
                    "would export it (undecided: held back by min_judgments or min_confidence); 'ranked' "
                    "for more than two responses",
                )
                reason = serializers.CharField(allow_blank=True, help_text="Why a pair is not decided")
                method = serializers.CharField(help_text="The aggregation method (the dataset form's default)")

            id = serializers.IntegerField()
            external_id = serializers.CharField(allow_blank=True)
            is_gold = serializers.BooleanField()
            judgment_count = serializers.IntegerField()
            target = serializers.IntegerField()
            messages = MessageSerializer(many=True)
            responses = ResponseRow(many=True)
            judgments = JudgmentRow(many=True)
            consensus = Consensus(allow_null=True)

        count = serializers.IntegerField()
        page = serializers.IntegerField()
        pages = serializers.IntegerField()
        results = ItemRow(many=True)

    @extend_schema(
        parameters=[PAGE_PARAM, OpenApiParameter("show", str, OpenApiParameter.QUERY, enum=["all", "open", "judged", "gold"])],
        responses={200: OutputSerializer, 403: ERROR, 404: ERROR},
        summary="Items with their responses (and models), judgments (by annotator) and live consensus",
    )
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        show = request.query_params.get("show", "all")
        if show not in ITEM_FILTERS:
            raise field_error("show", f"must be one of {', '.join(ITEM_FILTERS)}")
        listed = item_page_for_campaign(campaign=campaign, show=show, page=request.query_params.get("page"))
        results = []
        for row in listed.rows:
            item, c = row.item, row.consensus
            results.append({
                "id": item.pk, "external_id": item.prompt.external_id, "is_gold": item.is_gold,
                "judgment_count": item.judgment_count, "target": item.target, "messages": item.prompt.messages,
                "responses": [{"id": link.response_id, "position": link.position, "content": link.response.content,
                               "model": link.response.model_name} for link in row.links],
                "judgments": [{
                    "id": j.pk, "annotator": j.annotator.get_username(), "outcome": j.outcome,
                    "preferred_response_id": j.preferred_response_id, "strength": j.strength, "answer": j.answer,
                    "rationale": j.rationale, "excluded": j.annotator_id in listed.excluded,
                    "superseded": j.pk in listed.superseded, "created_at": j.created_at,
                } for j in row.judgments],
                "consensus": None if c is None else {"order": c.order, "tie": c.tie, "agreement": c.agreement,
                                                     "judgments": c.judgments, "outcome": c.outcome,
                                                     "reason": c.reason, "method": c.method},
            })
        page = listed.page
        data = {"count": page.paginator.count, "page": page.number, "pages": page.paginator.num_pages,
                "results": results}
        return Response(self.OutputSerializer(data).data)


class CampaignAuditListApi(APIView):
    permission_classes = [IsManager]

    class OutputSerializer(serializers.Serializer):
        class Entry(serializers.Serializer):
            id = serializers.IntegerField()
            actor = serializers.CharField(source="actor.username", allow_null=True, default=None)
            action = serializers.CharField()
            target = serializers.CharField(allow_blank=True)
            before = serializers.JSONField(allow_null=True)
            after = serializers.JSONField(allow_null=True)
            created_at = serializers.DateTimeField()

        count = serializers.IntegerField()
        page = serializers.IntegerField()
        pages = serializers.IntegerField()
        results = Entry(many=True)

    @extend_schema(parameters=[PAGE_PARAM], responses={200: OutputSerializer, 403: ERROR, 404: ERROR},
                   summary="The campaign's audit log, newest first: who did what, when, before and after")
    def get(self, request: Request, campaign_id: int) -> Response:
        from django.core.paginator import Paginator

        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        page = Paginator(audit_list_for_campaign(campaign=campaign), AUDIT_PER_PAGE).get_page(
            request.query_params.get("page"))
        return Response(self.OutputSerializer({
            "count": page.paginator.count, "page": page.number, "pages": page.paginator.num_pages,
            "results": list(page.object_list),
        }).data)
