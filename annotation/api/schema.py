"""The OpenAPI schema: the component naming of nested serializers, and the one error shape.

One view per operation means many nested `InputSerializer` / `OutputSerializer` classes; each
gets a component named after the view that holds it.
"""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

# Every error the API returns (annotation.errors.api_exception_handler), for every app's views.
ERROR = inline_serializer("Error", {"message": serializers.CharField(), "extra": serializers.DictField()})


class AutoSchema(SpectacularAutoSchema):
    def get_serializer_name(self, serializer, direction):
        """Return e.g. "CampaignStatusInput" for `CampaignStatusApi.InputSerializer`."""
        parts = type(serializer).__qualname__.split(".")
        outer = "".join(p.removesuffix("Api").removesuffix("Serializer") for p in parts[:-1])
        return outer + parts[-1]
