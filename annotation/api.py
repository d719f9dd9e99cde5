"""REST API v1: one view per operation — parse, authorize, call one service, serialize."""

from collections import defaultdict
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
from annotation.forms import AUDIT_PER_PAGE, ITEM_FILTERS, ITEMS_PER_PAGE
from annotation.models import Campaign, Dataset, Item, ItemResponse, Judgment, Role
from annotation.permissions import IsAnyRole, IsManager
from annotation.selectors import (
    campaign_get_for_user,
    campaign_list_for_user,
    campaign_progress,
    dataset_get_for_user,
    dataset_list_for_campaign,
)
from annotation.services.audit import audit_list_for_campaign
from annotation.services.campaigns import (
    COPY_ITEMS,
    campaign_close_into_dataset,
    campaign_create,
    campaign_new_version,
    campaign_set_status,
    campaign_update,
)
from annotation.services.datasets import (
    dataset_create,
    excluded_annotator_ids,
    items_live_consensus,
)
from annotation.services.imports import items_import, items_parse
from annotation.services.people import (
    MAX_INVITE_DAYS,
    invite_accept,
    invite_create,
    invite_get,
    invite_list,
    invite_revoke,
    invite_state,
    membership_add_by_username,
    membership_get,
    membership_list,
    membership_remove,
    membership_update,
)
from annotation.services.serving import (
    SKIP_REASONS,
    NextResult,
    assignment_extend,
    assignment_skip,
    judgment_submit,
    lease_next,
)

ERROR = inline_serializer("Error", {"message": serializers.CharField(), "extra": serializers.DictField()})


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
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        m = membership_add_by_username(campaign=campaign, actor=request.user, **s.validated_data)
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
        result = items_import(campaign=campaign, lines=upload.open("rb"), format=s.validated_data["format"],
                              actor=request.user, source=upload.name)
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


def next_payload(result: NextResult) -> dict:
    """The `next` answer: the annotator's view of the assignment (content only, in the order
    shown, no model names) and their progress line. The hot path (annotation.http.hotpath) sends the same."""
    assignment, shown = result.assignment, result.shown
    return {
        "assignment": None if assignment is None else {
            "id": assignment.pk,
            "expires_at": assignment.expires_at,
            "item": {
                "id": assignment.item_id,
                "messages": shown.messages,
                "responses": [{"id": rid, "content": content} for rid, content in shown.responses],
            },
        },
        "progress": result.progress,
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
        result = lease_next(campaign_id=campaign_id, annotator=request.user)
        return Response(next_payload(result))  # already in OutputSerializer's shape; it documents the schema


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


# --- The manager's console: settings, versions, closing, items, people, invites, audit -------------
# Managers of the campaign only: IsManager refuses other global roles (403) before the campaign
# lookup, which refuses non-members (404).


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

    class OutputSerializer(serializers.Serializer):
        class LineError(serializers.Serializer):
            line = serializers.IntegerField()
            message = serializers.CharField()

        ok = serializers.BooleanField()
        message = serializers.CharField()
        lines = serializers.IntegerField()
        items = serializers.IntegerField()
        formats = serializers.DictField(child=serializers.IntegerField())
        error_count = serializers.IntegerField()
        errors = LineError(many=True)

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
        report = items_parse(campaign=campaign, lines=upload.open("rb"), format=s.validated_data["format"])
        return Response(self.OutputSerializer({
            "ok": report.ok, "message": report.summary(), "lines": report.lines, "items": len(report.records),
            "formats": dict(report.formats), "error_count": report.error_count,
            "errors": [{"line": line, "message": msg} for line, msg in report.errors],
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
                agreement = serializers.FloatField()
                judgments = serializers.IntegerField()

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
        from django.core.paginator import Paginator

        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        show = request.query_params.get("show", "all")
        if show not in ITEM_FILTERS:
            raise field_error("show", f"must be one of {', '.join(ITEM_FILTERS)}")
        items = Item.objects.filter(campaign=campaign, **ITEM_FILTERS[show][1]).select_related("prompt").order_by("pk")
        page = Paginator(items, ITEMS_PER_PAGE).get_page(request.query_params.get("page"))
        ids = [i.pk for i in page.object_list]
        consensus = items_live_consensus(campaign=campaign, item_ids=ids)
        excluded = excluded_annotator_ids(campaign=campaign)
        links = defaultdict(list)
        for link in ItemResponse.objects.filter(item_id__in=ids).select_related("response").order_by("position"):
            links[link.item_id].append({"id": link.response_id, "position": link.position,
                                        "content": link.response.content, "model": link.response.model_name})
        judgments = defaultdict(list)
        superseded = set(Judgment.objects.filter(item_id__in=ids, supersedes__isnull=False)
                         .values_list("supersedes_id", flat=True))
        for j in Judgment.objects.filter(item_id__in=ids).select_related("annotator").order_by("created_at", "pk"):
            judgments[j.item_id].append({
                "id": j.pk, "annotator": j.annotator.get_username(), "outcome": j.outcome,
                "preferred_response_id": j.preferred_response_id, "strength": j.strength, "answer": j.answer,
                "rationale": j.rationale, "excluded": j.annotator_id in excluded, "superseded": j.pk in superseded,
                "created_at": j.created_at,
            })
        results = []
        for item in page.object_list:
            c = consensus.get(item.pk)
            results.append({
                "id": item.pk, "external_id": item.prompt.external_id, "is_gold": item.is_gold,
                "judgment_count": item.judgment_count, "target": item.target, "messages": item.prompt.messages,
                "responses": links[item.pk], "judgments": judgments[item.pk],
                "consensus": None if c is None else {"order": c.order, "tie": c.tie, "agreement": c.agreement,
                                                     "judgments": c.judgments},
            })
        data = {"count": page.paginator.count, "page": page.number, "pages": page.paginator.num_pages,
                "results": results}
        return Response(self.OutputSerializer(data).data)


class MembershipOutputSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField(source="user.username")
    role = serializers.CharField()
    is_active = serializers.BooleanField(help_text="False: paused, served nothing")
    cap = serializers.IntegerField(allow_null=True)
    judged = serializers.IntegerField()
    gold_judged = serializers.IntegerField()
    gold_correct = serializers.IntegerField()
    excluded = serializers.BooleanField(help_text="True: judgments left out of aggregation")


class CampaignMemberListApi(APIView):
    permission_classes = [IsManager]

    @extend_schema(responses={200: MembershipOutputSerializer(many=True), 403: ERROR, 404: ERROR},
                   summary="Members of a campaign with their counts, caps, pause and exclusion")
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        return Response(MembershipOutputSerializer(membership_list(campaign=campaign), many=True).data)


class CampaignMemberUpdateApi(APIView):
    permission_classes = [IsManager]

    class InputSerializer(serializers.Serializer):
        is_active = serializers.BooleanField(required=False, help_text="false pauses the member, true resumes")
        excluded = serializers.BooleanField(required=False, help_text="true leaves their judgments out of aggregation")
        cap = serializers.IntegerField(min_value=1, required=False, allow_null=True, help_text="null: no cap")

    @extend_schema(request=InputSerializer, responses={200: MembershipOutputSerializer, 400: ERROR, 404: ERROR},
                   summary="Pause / resume, exclude / include, or cap a member")
    def post(self, request: Request, campaign_id: int, user_id: int) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        membership = membership_get(campaign=campaign, user_id=user_id)
        membership = membership_update(membership=membership, actor=request.user, **s.validated_data)
        return Response(MembershipOutputSerializer(membership).data)


class CampaignMemberRemoveApi(APIView):
    permission_classes = [IsManager]

    @extend_schema(request=None, responses={204: None, 404: ERROR, 409: ERROR},
                   summary="Remove a member (their judgments stay)")
    def post(self, request: Request, campaign_id: int, user_id: int) -> Response:
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        membership_remove(membership=membership_get(campaign=campaign, user_id=user_id), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InviteOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.SerializerMethodField()
    role = serializers.CharField()
    cap = serializers.IntegerField(allow_null=True)
    max_uses = serializers.IntegerField(allow_null=True)
    uses = serializers.IntegerField()
    state = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_url(self, obj) -> str:
        from django.urls import reverse

        path = reverse("invite_accept", kwargs={"token": obj.token})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_state(self, obj) -> str:
        return invite_state(obj)


class CampaignInviteListApi(APIView):
    permission_classes = [IsManager]

    @extend_schema(responses={200: InviteOutputSerializer(many=True), 403: ERROR, 404: ERROR},
                   summary="Invite links of a campaign, newest first")
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        return Response(InviteOutputSerializer(invite_list(campaign=campaign), many=True,
                                               context={"request": request}).data)


class CampaignInviteCreateApi(APIView):
    permission_classes = [IsManager]

    class InputSerializer(serializers.Serializer):
        role = serializers.ChoiceField(choices=Role.choices, default=Role.ANNOTATOR)
        expires_in_hours = serializers.IntegerField(min_value=1, max_value=24 * MAX_INVITE_DAYS, default=24 * 7)
        max_uses = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)
        cap = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)

    @extend_schema(request=InputSerializer, responses={201: InviteOutputSerializer, 400: ERROR, 409: ERROR},
                   summary="Create an invite link that expires")
    def post(self, request: Request, campaign_id: int) -> Response:
        from datetime import timedelta

        from django.utils import timezone

        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        d = s.validated_data
        invite = invite_create(campaign=campaign, actor=request.user, role=d["role"], cap=d["cap"],
                               max_uses=d["max_uses"], expires_at=timezone.now() + timedelta(hours=d["expires_in_hours"]))
        return Response(InviteOutputSerializer(invite, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)


class CampaignInviteRevokeApi(APIView):
    permission_classes = [IsManager]

    @extend_schema(request=None, responses={200: InviteOutputSerializer, 404: ERROR}, summary="Revoke an invite link")
    def post(self, request: Request, campaign_id: int, invite_id: int) -> Response:
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        invite = invite_revoke(invite=invite_get(campaign=campaign, invite_id=invite_id), actor=request.user)
        return Response(InviteOutputSerializer(invite, context={"request": request}).data)


class InviteAcceptApi(APIView):
    permission_classes = [IsAuthenticated]  # the service checks the invite and the user's role

    class OutputSerializer(serializers.Serializer):
        campaign_id = serializers.IntegerField()
        role = serializers.CharField()
        joined = serializers.BooleanField(help_text="false: you were already a member")

    @extend_schema(request=None, responses={200: OutputSerializer, 403: ERROR, 404: ERROR, 410: ERROR},
                   summary="Join a campaign by an invite token")
    def post(self, request: Request, token: str) -> Response:
        membership, joined = invite_accept(token=token, user=request.user)
        return Response(self.OutputSerializer(
            {"campaign_id": membership.campaign_id, "role": membership.role, "joined": joined}
        ).data)


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
