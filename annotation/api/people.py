"""REST API v1, people: members, invite links, and the API token of a user."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.api.schema import ERROR
from annotation.errors import ApplicationError
from annotation.models import Role
from annotation.permissions import IsManager
from annotation.selectors import campaign_get_for_user
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
