"""REST API v1, campaigns: list, read, create, change status, import items."""

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.api.schema import ERROR
from annotation.core.importing import NEAR_DUPLICATE_RULE
from annotation.errors import field_error
from annotation.models import Campaign, Role
from annotation.permissions import IsAnyRole, IsManager
from annotation.selectors import campaign_get_for_user, campaign_list_for_user, campaign_progress
from annotation.services.campaigns import campaign_create, campaign_set_status
from annotation.services.imports import items_import


class CampaignOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Campaign
        fields = [
            "id", "name", "instructions", "kind", "criteria", "status", "overlap", "lease_seconds", "gold_rate",
            "allow_ties", "allow_both_bad", "use_strength", "require_rationale", "allow_editing",
            "version", "parent", "round_number", "item_count", "created_at",
        ]


class CampaignListApi(APIView):
    permission_classes = [IsAnyRole]

    @extend_schema(responses=CampaignOutputSerializer(many=True), summary="Campaigns you are a member of")
    def get(self, request: Request) -> Response:
        campaigns = campaign_list_for_user(user=request.user).order_by("-created_at")
        return Response(CampaignOutputSerializer(campaigns, many=True).data)


class CampaignDetailApi(APIView):
    permission_classes = [IsAnyRole]

    class OutputSerializer(CampaignOutputSerializer):
        progress = serializers.SerializerMethodField()

        class Meta(CampaignOutputSerializer.Meta):
            fields = [*CampaignOutputSerializer.Meta.fields, "progress"]

        def get_progress(self, obj: Campaign) -> dict[str, int]:
            return campaign_progress(campaign=obj)

    @extend_schema(responses={200: OutputSerializer, 404: ERROR}, summary="One campaign with its progress")
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id)
        return Response(self.OutputSerializer(campaign).data)


class CampaignCreateApi(APIView):
    permission_classes = [IsManager]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        instructions = serializers.CharField(required=False, allow_blank=True, default="")
        kind = serializers.ChoiceField(choices=Campaign.Kind.choices, default=Campaign.Kind.PAIRWISE)
        criteria = serializers.JSONField(required=False, default=list, help_text="[{name, label, description, scale}]")
        overlap = serializers.IntegerField(min_value=1, max_value=100, default=1)
        lease_seconds = serializers.IntegerField(min_value=30, default=600)
        allow_ties = serializers.BooleanField(default=True)
        allow_both_bad = serializers.BooleanField(default=True)
        use_strength = serializers.BooleanField(default=True)
        require_rationale = serializers.BooleanField(default=False)
        allow_editing = serializers.BooleanField(default=False)
        gold_rate = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.0)

    @extend_schema(request=InputSerializer, responses={201: CampaignOutputSerializer, 400: ERROR})
    def post(self, request: Request) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        campaign = campaign_create(created_by=request.user, **s.validated_data)
        return Response(CampaignOutputSerializer(campaign).data, status=status.HTTP_201_CREATED)


class CampaignStatusApi(APIView):
    permission_classes = [IsManager]

    class InputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Campaign.Status.choices)

    @extend_schema(request=InputSerializer, responses={200: CampaignOutputSerializer, 409: ERROR})
    def post(self, request: Request, campaign_id: int) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        campaign = campaign_set_status(campaign=campaign, status=s.validated_data["status"], actor=request.user)
        return Response(CampaignOutputSerializer(campaign).data)


class LineNoteSerializer(serializers.Serializer):
    """A line of the file and what happened to it (an error, a skip or a warning)."""

    line = serializers.IntegerField()
    message = serializers.CharField()

    def to_representation(self, instance: tuple[int, str]) -> dict:
        line, message = instance
        return {"line": line, "message": message}


SKIP_DUPLICATES_HELP = (
    "Leave out lines that repeat an earlier line or an item already in the campaign (same conversation and "
    "replies after Unicode NFC normalization and trimming outer whitespace), and list them; by default they "
    "are bad lines and nothing is imported."
)


class CampaignImportApi(APIView):
    permission_classes = [IsManager]
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(help_text="JSONL: Arbiter's format, TRL preference rows or HH transcripts.")
        format = serializers.ChoiceField(choices=["auto", "arbiter", "trl", "hh"], default="auto")
        skip_duplicates = serializers.BooleanField(default=False, help_text=SKIP_DUPLICATES_HELP)

    class OutputSerializer(serializers.Serializer):
        items = serializers.IntegerField()
        responses = serializers.IntegerField()
        formats = serializers.DictField(child=serializers.IntegerField())
        skipped_count = serializers.IntegerField(help_text="Duplicate lines left out (skip_duplicates).")
        skipped = LineNoteSerializer(many=True)
        warning_count = serializers.IntegerField(help_text="Near-duplicate prompts flagged; they were imported.")
        warnings = LineNoteSerializer(many=True)
        near_duplicate_rule = serializers.SerializerMethodField()

        def get_near_duplicate_rule(self, obj: object) -> str:
            return NEAR_DUPLICATE_RULE

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={201: OutputSerializer, 400: OpenApiResponse(ERROR, description="Every bad line, with its number")},
        summary="Import JSONL items, all or nothing",
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        upload = s.validated_data["file"]
        if upload.size > settings.ARBITER_IMPORT_MAX_BYTES:
            raise field_error("file", f"is larger than the {settings.ARBITER_IMPORT_MAX_BYTES} byte limit")
        result = items_import(campaign=campaign, lines=upload.open("rb"), format=s.validated_data["format"],
                              actor=request.user, source=upload.name,
                              skip_duplicates=s.validated_data["skip_duplicates"])
        return Response(self.OutputSerializer(result).data, status=status.HTTP_201_CREATED)
