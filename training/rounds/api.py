"""REST API: open a campaign's next round from generated replies (queued for the worker)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.api.schema import ERROR
from annotation.models import Role
from annotation.permissions import IsManager
from annotation.selectors import campaign_get_for_user
from training.rounds.services import SELECTIONS, round_queue, round_request_clean


class CampaignRoundCreateApi(APIView):
    permission_classes = [IsManager]

    class InputSerializer(serializers.Serializer):
        checkpoints = serializers.ListField(
            child=serializers.CharField(),
            allow_empty=False,
            help_text="Absolute paths of policy model folders under ARBITER_MODEL_ROOTS or a training run's folder.",
        )
        k = serializers.IntegerField(default=2, help_text="Replies per prompt and checkpoint.")
        max_new_tokens = serializers.IntegerField(default=256)
        temperature = serializers.FloatField(default=0.7, help_text="0 decodes greedily.")
        top_p = serializers.FloatField(default=1.0)
        selection = serializers.ChoiceField(choices=list(SELECTIONS.items()), default="random")
        reward_model = serializers.CharField(
            required=False, allow_null=True, allow_blank=True, default=None,
            help_text="Reward model folder; required by 'uncertain' selection.",
        )
        pairs_per_prompt = serializers.IntegerField(default=1)
        max_prompts = serializers.IntegerField(required=False, allow_null=True, default=None)
        name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
        seed = serializers.IntegerField(default=0)
        activate = serializers.BooleanField(default=False, help_text="Activate the round once it is created.")

        class Meta:
            ref_name = "RoundCreateInput"

    class OutputSerializer(serializers.Serializer):
        class Checkpoint(serializers.Serializer):
            label = serializers.CharField()
            path = serializers.CharField()

        request = serializers.CharField(source="token", help_text="Identifies the request in the campaign's audit log.")
        status = serializers.CharField(default="queued")
        checkpoints = serializers.SerializerMethodField()
        k = serializers.IntegerField()
        max_new_tokens = serializers.IntegerField()
        temperature = serializers.FloatField()
        top_p = serializers.FloatField()
        selection = serializers.CharField()
        reward_model = serializers.CharField(allow_null=True)
        pairs_per_prompt = serializers.IntegerField()
        max_prompts = serializers.IntegerField(allow_null=True)
        name = serializers.CharField()
        seed = serializers.IntegerField()
        activate = serializers.BooleanField()

        class Meta:
            ref_name = "RoundCreateOutput"

        def get_checkpoints(self, obj) -> list[dict[str, str]]:
            return [{"label": label, "path": path} for label, path in obj.checkpoints]

    @extend_schema(
        request=InputSerializer,
        responses={202: OutputSerializer, 400: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        summary="Generate replies from checkpoints and open the campaign's next round (in the background)",
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        data = s.validated_data
        round_request = round_request_clean(
            campaign=campaign,
            **{**data, "reward_model": data["reward_model"] or None, "name": data["name"] or None},
        )
        round_queue(campaign=campaign, request=round_request, created_by=request.user)
        return Response(self.OutputSerializer(round_request).data, status=status.HTTP_202_ACCEPTED)

