"""REST API v1, judging: lease the next item, submit, skip, keep a lease alive."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.api.schema import ERROR
from annotation.core.handles import answer_to_handles
from annotation.models import Judgment
from annotation.services.serving import (
    SKIP_REASONS,
    NextResult,
    assignment_extend,
    assignment_handles,
    assignment_skip,
    next_for,
    submit_for,
)


class MessageSerializer(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField(allow_blank=True)


class AssignmentOutputSerializer(serializers.Serializer):
    """What the annotator's browser receives: no model names, responses in display order, each
    named by an opaque handle that holds for this assignment only (send it back in the answer)."""

    class ItemSerializer(serializers.Serializer):
        class ShownResponse(serializers.Serializer):
            id = serializers.CharField(help_text="this assignment's handle for the response (not its database id)")
            content = serializers.CharField(allow_blank=True)

        id = serializers.IntegerField()
        messages = MessageSerializer(many=True)
        responses = ShownResponse(many=True)

    id = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    item = ItemSerializer()


def next_payload(result: NextResult) -> dict:
    """The `next` answer: the annotator's view of the assignment (content only, in the order
    shown, no model names, each response named by its handle) and their progress line. The hot
    path (annotation.http.hotpath) sends the same."""
    assignment, shown = result.assignment, result.shown
    if assignment is not None:
        handles = assignment_handles(assignment.pk, [rid for rid, _ in shown.responses])
    return {
        "assignment": None if assignment is None else {
            "id": assignment.pk,
            "expires_at": assignment.expires_at,
            "item": {
                "id": assignment.item_id,
                "messages": shown.messages,
                "responses": [{"id": handles[rid], "content": content} for rid, content in shown.responses],
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
        result = next_for(campaign_id=campaign_id, annotator=request.user)
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
        preferred_response_id = serializers.CharField(
            required=False, allow_null=True, allow_blank=True, default=None,
            help_text="pairwise, outcome preferred: the handle (`id`) `next` gave the preferred response",
        )
        strength = serializers.IntegerField(required=False, allow_null=True, default=None)
        criteria = serializers.JSONField(
            required=False, help_text='pairwise with criteria: {"helpfulness": "<response handle>" | "tie", ...}'
        )
        ranking = serializers.JSONField(required=False, help_text="ranking: groups of response handles, best first")
        ratings = serializers.JSONField(
            required=False, help_text='rating: {"<response handle>": {"<criterion>": score}}'
        )
        flags = serializers.JSONField(required=False, help_text="unsafe, private_data, broken, cant_judge")
        rationale = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
        edited_response = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
        time_taken_ms = serializers.IntegerField(required=False, allow_null=True, default=None)

    class OutputSerializer(serializers.Serializer):
        """The judgment as stored, its responses named by the assignment's handles (`submit_payload`)."""

        id = serializers.IntegerField()
        assignment_id = serializers.IntegerField()
        outcome = serializers.CharField()
        preferred_response_id = serializers.CharField(allow_null=True, help_text="the preferred response's handle")
        strength = serializers.IntegerField(allow_null=True)
        answer = serializers.JSONField(help_text="kind-specific, naming responses by handle")
        created_at = serializers.DateTimeField()

    @extend_schema(
        request=InputSerializer,
        responses={201: OutputSerializer, 200: OutputSerializer, 400: ERROR, 409: ERROR},
        summary="Submit a judgment (idempotent on the assignment id)",
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        code, judgment = submit_for(
            assignment_id=assignment_id, annotator=request.user, answer=lambda: s.validated_data
        )
        return Response(submit_payload(self.OutputSerializer().to_representation(judgment), judgment), status=code)


def submit_payload(data: dict, judgment: Judgment) -> dict:
    """The submit answer (`OutputSerializer`'s `data` of the judgment) as its annotator sees it:
    responses named by the assignment's handles, never by id. The hot path sends the same."""
    handles = assignment_handles(judgment.assignment_id, list(judgment.display_order))
    preferred = judgment.preferred_response_id
    data["preferred_response_id"] = None if preferred is None else handles[preferred]
    data["answer"] = answer_to_handles(judgment.answer or {}, handles)
    return data


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
