"""REST API v1: one view per operation — parse, authorize, call one service, serialize."""

from types import SimpleNamespace

from django.conf import settings
from django.http import HttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import exports
from annotation.errors import ApplicationError, ConflictError, NotFoundError, field_error
from annotation.models import Assignment, Campaign, Dataset, ItemResponse, Role
from annotation.permissions import IsAnyRole, IsManager
from annotation.selectors import (
    campaign_get_for_user,
    campaign_list_for_user,
    campaign_progress,
    dataset_get_for_user,
    dataset_list_for_campaign,
    judging_progress,
)
from annotation.services.campaigns import campaign_create, campaign_set_status, membership_add
from annotation.services.datasets import dataset_create
from annotation.services.imports import items_import
from annotation.services.serving import (
    SKIP_REASONS,
    assignment_extend,
    assignment_lease_next,
    assignment_skip,
    judgment_submit,
)

ERROR = inline_serializer("Error", {"message": serializers.CharField(), "extra": serializers.DictField()})


class CampaignOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Campaign
        fields = [
            "id", "name", "instructions", "kind", "criteria", "status", "overlap", "lease_seconds", "gold_rate",
            "allow_ties", "allow_both_bad", "use_strength", "require_rationale", "allow_editing",
            "version", "created_at",
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
        campaign = campaign_set_status(campaign=campaign, status=s.validated_data["status"])
        return Response(CampaignOutputSerializer(campaign).data)


class CampaignMemberAddApi(APIView):
    permission_classes = [IsManager]

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField()
        role = serializers.ChoiceField(choices=Role.choices, default=Role.ANNOTATOR)
        cap = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)

    class OutputSerializer(serializers.Serializer):
        username = serializers.CharField(source="user.username")
        role = serializers.CharField()
        cap = serializers.IntegerField(allow_null=True)
        is_active = serializers.BooleanField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer, 400: ERROR})
    def post(self, request: Request, campaign_id: int) -> Response:
        from django.contrib.auth import get_user_model

        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        user = get_user_model().objects.filter(username=s.validated_data["username"], is_active=True).first()
        if user is None:
            raise field_error("username", f"no active user called {s.validated_data['username']!r}")
        m = membership_add(campaign=campaign, user=user, role=s.validated_data["role"], cap=s.validated_data["cap"])
        return Response(self.OutputSerializer(m).data, status=status.HTTP_201_CREATED)


class CampaignImportApi(APIView):
    permission_classes = [IsManager]
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(help_text="JSONL: Arbiter's format, TRL preference rows or HH transcripts.")
        format = serializers.ChoiceField(choices=["auto", "arbiter", "trl", "hh"], default="auto")

    class OutputSerializer(serializers.Serializer):
        items = serializers.IntegerField()
        responses = serializers.IntegerField()
        formats = serializers.DictField(child=serializers.IntegerField())

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
        result = items_import(campaign=campaign, lines=upload.open("rb"), format=s.validated_data["format"])
        return Response(self.OutputSerializer(result).data, status=status.HTTP_201_CREATED)


class MessageSerializer(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField(allow_blank=True)


class AssignmentOutputSerializer(serializers.Serializer):
    """What the annotator's browser receives: no model names, responses in display order."""

    class ItemSerializer(serializers.Serializer):
        class ShownResponse(serializers.Serializer):
            id = serializers.IntegerField()
            content = serializers.CharField(allow_blank=True)

        id = serializers.IntegerField()
        messages = MessageSerializer(many=True)
        responses = ShownResponse(many=True)

    id = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    item = ItemSerializer()


def assignment_payload(assignment: Assignment) -> dict:
    """Build the annotator's view of an assignment: content only, in the order shown."""
    item = assignment.item
    by_id = dict(ItemResponse.objects.filter(item_id=item.pk).values_list("response_id", "response__content"))
    return {
        "id": assignment.pk,
        "expires_at": assignment.expires_at,
        "item": {
            "id": item.pk,
            "messages": item.prompt.messages,
            "responses": [{"id": rid, "content": by_id[rid]} for rid in assignment.display_order],
        },
    }


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    mine = serializers.IntegerField()


class AssignmentNextApi(APIView):
    permission_classes = [IsAuthenticated]  # the service checks the campaign membership

    class OutputSerializer(serializers.Serializer):
        assignment = AssignmentOutputSerializer(allow_null=True)
        progress = ProgressSerializer()

    @extend_schema(request=None, responses={200: OutputSerializer, 409: ERROR}, summary="Lease the next item")
    def post(self, request: Request, campaign_id: int) -> Response:
        # The service authorizes: only an active annotator (or manager) member is served.
        assignment = assignment_lease_next(campaign_id=campaign_id, annotator=request.user)
        data = {
            "assignment": assignment_payload(assignment) if assignment else None,
            "progress": judging_progress(campaign_id=campaign_id, user=request.user),
        }
        return Response(data)  # already in OutputSerializer's shape; it documents the schema


class JudgmentSubmitApi(APIView):
    permission_classes = [IsAuthenticated]  # the service checks the campaign membership

    class InputSerializer(serializers.Serializer):
        """The answer's shape depends on the campaign's kind; the service checks it against the
        campaign's schema and names the field at fault."""

        outcome = serializers.ChoiceField(
            choices=["preferred", "tie", "both_bad", "ranked", "rated"],
            help_text="pairwise: preferred | tie | both_bad; ranking: ranked; rating: rated",
        )
        preferred_response_id = serializers.IntegerField(required=False, allow_null=True, default=None)
        strength = serializers.IntegerField(required=False, allow_null=True, default=None)
        criteria = serializers.JSONField(
            required=False, help_text='pairwise with criteria: {"helpfulness": <response id> | "tie", ...}'
        )
        ranking = serializers.JSONField(required=False, help_text="ranking: groups of response ids, best first")
        ratings = serializers.JSONField(
            required=False, help_text='rating: {"<response id>": {"<criterion>": score}}'
        )
        flags = serializers.JSONField(required=False, help_text="unsafe, private_data, broken, cant_judge")
        rationale = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
        edited_response = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
        time_taken_ms = serializers.IntegerField(required=False, allow_null=True, default=None)

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        assignment_id = serializers.IntegerField()
        outcome = serializers.CharField()
        preferred_response_id = serializers.IntegerField(allow_null=True)
        strength = serializers.IntegerField(allow_null=True)
        answer = serializers.JSONField()
        created_at = serializers.DateTimeField()

    @extend_schema(
        request=InputSerializer,
        responses={201: OutputSerializer, 200: OutputSerializer, 400: ERROR, 409: ERROR},
        summary="Submit a judgment (idempotent on the assignment id)",
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        judgment, created = judgment_submit(
            assignment_id=assignment_id, annotator=request.user, answer=s.validated_data
        )
        return Response(
            self.OutputSerializer(judgment).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class AssignmentSkipApi(APIView):
    permission_classes = [IsAuthenticated]  # the service checks the campaign membership

    class InputSerializer(serializers.Serializer):
        reason = serializers.ChoiceField(choices=["", *SKIP_REASONS], required=False, default="")

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        status = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer, 409: ERROR}, summary="Skip an item")
    def post(self, request: Request, assignment_id: int) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        assignment = assignment_skip(
            assignment_id=assignment_id, annotator=request.user, reason=s.validated_data["reason"]
        )
        return Response(self.OutputSerializer(assignment).data)


class AssignmentHeartbeatApi(APIView):
    permission_classes = [IsAuthenticated]  # the service checks the campaign membership

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        status = serializers.CharField()
        expires_at = serializers.DateTimeField()

    @extend_schema(request=None, responses={200: OutputSerializer, 409: ERROR}, summary="Extend a lease")
    def post(self, request: Request, assignment_id: int) -> Response:
        assignment = assignment_extend(assignment_id=assignment_id, annotator=request.user)
        return Response(self.OutputSerializer(assignment).data)


class AuthTokenApi(APIView):
    """Return (creating it once) the API token of the user who logs in with username and password."""

    permission_classes: list = []
    authentication_classes: list = []

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField()
        password = serializers.CharField(style={"input_type": "password"})

    @extend_schema(
        request=InputSerializer,
        responses={200: inline_serializer("Token", {"token": serializers.CharField()}), 400: ERROR},
    )
    def post(self, request: Request) -> Response:
        from django.contrib.auth import authenticate
        from rest_framework.authtoken.models import Token

        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        user = authenticate(request, username=s.validated_data["username"], password=s.validated_data["password"])
        if user is None or not user.is_active:
            raise ApplicationError("Unable to log in with these credentials.")
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


# --- Datasets (researcher API) ---------------------------------------------------------------------
# Managers and researchers of the campaign read; only its managers create. Annotators get 403,
# non-members 404, as for campaigns.

READERS = (Role.MANAGER, Role.RESEARCHER)


class DatasetOutputSerializer(serializers.ModelSerializer):
    counts = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.get_username")

    class Meta:
        model = Dataset
        fields = [
            "id", "campaign", "version", "method", "params", "status", "error", "content_hash", "counts",
            "campaign_version", "last_judgment_id", "created_by", "created_at", "finished_at",
        ]

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
        method = serializers.ChoiceField(choices=Dataset.Method.choices, default=Dataset.Method.DAWID_SKENE)
        params = serializers.JSONField(
            required=False, default=dict,
            help_text="Aggregation parameters; every one has a default (see the dataset's `params` once created).",
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
