"""REST API v1, dashboard: the campaign dashboard, the same payload the dashboard's websocket pushes."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.api.schema import ERROR
from annotation.dashboard import campaign_dashboard
from annotation.models import Role
from annotation.permissions import IsManager
from annotation.selectors import campaign_get_for_user


class CampaignDashboardApi(APIView):
    """Return the live dashboard of a campaign; its managers only."""

    permission_classes = [IsManager]

    class OutputSerializer(serializers.Serializer):
        class Campaign(serializers.Serializer):
            id = serializers.IntegerField()
            name = serializers.CharField()
            kind = serializers.CharField()
            status = serializers.CharField()
            overlap = serializers.IntegerField()

        class Progress(serializers.Serializer):
            items = serializers.IntegerField(help_text="Regular items.")
            items_complete = serializers.IntegerField(help_text="Regular items with all the judgments they want.")
            judgments = serializers.IntegerField(help_text="Judgments on regular items.")
            wanted = serializers.IntegerField(help_text="Judgments wanted over all regular items.")
            leased = serializers.IntegerField(help_text="Open leases on regular items.")
            per_minute = serializers.IntegerField(help_text="Judgments on regular items in the last minute.")
            share = serializers.FloatField(allow_null=True, help_text="judgments / wanted; null when nothing is wanted.")

        class Throughput(serializers.Serializer):
            class Bucket(serializers.Serializer):
                t = serializers.DateTimeField(help_text="Start of the minute.")
                count = serializers.IntegerField()

            bucket_seconds = serializers.IntegerField()
            window_minutes = serializers.IntegerField()
            buckets = Bucket(many=True)
            total = serializers.IntegerField()
            peak = serializers.IntegerField()

        class Annotator(serializers.Serializer):
            class Gold(serializers.Serializer):
                correct = serializers.IntegerField()
                n = serializers.IntegerField()
                accuracy = serializers.FloatField(allow_null=True)

            user_id = serializers.IntegerField()
            username = serializers.CharField()
            role = serializers.CharField(allow_null=True)
            judged = serializers.IntegerField(help_text="Judgments made here, gold checks included.")
            cap = serializers.IntegerField(allow_null=True)
            paused = serializers.BooleanField()
            excluded = serializers.BooleanField(help_text="Left out of agreement, position bias and leaderboard.")
            median_seconds = serializers.FloatField(allow_null=True)
            timed = serializers.IntegerField(help_text="Judgments with a recorded time.")
            gold = Gold()

        class TimePerItem(serializers.Serializer):
            median_seconds = serializers.FloatField(allow_null=True)
            n = serializers.IntegerField()

        class Agreement(serializers.Serializer):
            method = serializers.CharField()
            label = serializers.CharField()
            value = serializers.FloatField(allow_null=True)
            items = serializers.IntegerField(help_text="Items judged by two or more annotators.")
            judgments = serializers.IntegerField()
            annotators = serializers.IntegerField()

        class Consensus(serializers.Serializer):
            class Undecided(serializers.Serializer):
                too_few_judgments = serializers.IntegerField()
                below_confidence = serializers.IntegerField()

            method = serializers.CharField(help_text="The dataset form's default method, which the items page uses too.")
            min_confidence = serializers.FloatField()
            min_judgments = serializers.IntegerField()
            pairs = serializers.IntegerField(help_text="Judged pairs of regular items.")
            decided = serializers.IntegerField(help_text="Pairs a dataset with the default settings would export decided.")
            ties = serializers.IntegerField()
            undecided = Undecided(help_text="Pairs held back by each threshold.")

        class PositionBias(serializers.Serializer):
            rate = serializers.FloatField(allow_null=True, help_text="Share of decisive judgments won by the response shown first.")
            ci_low = serializers.FloatField(allow_null=True)
            ci_high = serializers.FloatField(allow_null=True)
            confidence = serializers.FloatField()
            decisive = serializers.IntegerField()
            first_wins = serializers.IntegerField()
            ties = serializers.IntegerField()
            p_value = serializers.FloatField(allow_null=True)

        class Leaderboard(serializers.Serializer):
            class Row(serializers.Serializer):
                model = serializers.CharField()
                score = serializers.FloatField()
                ci_low = serializers.FloatField()
                ci_high = serializers.FloatField()
                rank = serializers.IntegerField()
                n = serializers.IntegerField()

            rows = Row(many=True)
            bootstrap_rounds = serializers.IntegerField()
            confidence = serializers.FloatField()
            scale = serializers.CharField()
            prior = serializers.FloatField()
            note = serializers.CharField(allow_blank=True)

        class QualityAsOf(serializers.Serializer):
            judgment_count = serializers.IntegerField(help_text="Judgment count the quality figures were computed at.")
            stale = serializers.BooleanField(help_text="True while a large campaign's figures wait to be recomputed.")
            refresh_in = serializers.FloatField(allow_null=True, help_text="Seconds until they are recomputed.")
            compute_seconds = serializers.FloatField(help_text="How long the last computation took.")

        campaign = Campaign()
        generated_at = serializers.DateTimeField()
        judgment_count = serializers.IntegerField(help_text="Every judgment stored, gold checks and corrections included.")
        progress = Progress()
        throughput = Throughput()
        annotators = Annotator(many=True)
        excluded = serializers.ListField(child=serializers.CharField(), help_text="Usernames of excluded members.")
        time_per_item = TimePerItem()
        agreement = Agreement()
        consensus = Consensus()
        position_bias = PositionBias()
        leaderboard = Leaderboard()
        quality_as_of = QualityAsOf(help_text="How current agreement, bias, leaderboard and times are.")

    @extend_schema(
        responses={200: OutputSerializer, 403: ERROR, 404: ERROR},
        summary="Live dashboard of a campaign: progress, throughput, annotators, agreement, position bias, leaderboard",
    )
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=[Role.MANAGER])
        return Response(self.OutputSerializer(campaign_dashboard(campaign=campaign)).data)
