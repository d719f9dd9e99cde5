"""The OpenAPI schema class: one view per operation means many nested `InputSerializer` /
`OutputSerializer` classes; each gets a component named after the view that holds it."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema


class AutoSchema(SpectacularAutoSchema):
    def get_serializer_name(self, serializer, direction):
        """Return e.g. "CampaignStatusInput" for `CampaignStatusApi.InputSerializer`."""
        parts = type(serializer).__qualname__.split(".")
        outer = "".join(p.removesuffix("Api").removesuffix("Serializer") for p in parts[:-1])
        return outer + parts[-1]
