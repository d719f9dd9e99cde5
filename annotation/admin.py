from django.contrib import admin

from annotation.models import (
    Assignment,
    AuditEntry,
    Campaign,
    Invite,
    Item,
    ItemResponse,
    Judgment,
    Membership,
    Prompt,
    Response,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "status", "overlap", "version", "created_by", "created_at"]
    list_filter = ["kind", "status", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "campaign", "role", "is_active", "cap", "created_at"]
    list_filter = ["role", "is_active", "campaign"]
    search_fields = ["user__username", "campaign__name"]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "external_id", "campaign", "created_at"]
    list_filter = ["campaign"]
    search_fields = ["external_id"]


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt", "model_name", "created_at"]
    list_filter = ["model_name", "prompt__campaign"]
    search_fields = ["model_name", "content"]
    raw_id_fields = ["prompt"]


class ItemResponseInline(admin.TabularInline):
    model = ItemResponse
    extra = 0
    raw_id_fields = ["response"]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["id", "campaign", "prompt", "judgment_count", "lease_count", "target", "priority", "is_gold"]
    list_filter = ["campaign", "is_gold"]
    raw_id_fields = ["prompt"]
    inlines = [ItemResponseInline]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "campaign", "item", "annotator", "status", "leased_at", "expires_at"]
    list_filter = ["status", "campaign", "annotator"]
    raw_id_fields = ["item"]
    date_hierarchy = "leased_at"


@admin.register(Judgment)
class JudgmentAdmin(admin.ModelAdmin):
    list_display = ["id", "campaign", "item", "annotator", "outcome", "strength", "time_taken_ms", "created_at"]
    list_filter = ["outcome", "strength", "campaign", "annotator"]
    raw_id_fields = ["item", "assignment", "preferred_response", "supersedes"]
    date_hierarchy = "created_at"

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # judgments are immutable; a correction is a new judgment


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ["id", "campaign", "role", "uses", "max_uses", "expires_at", "revoked_at", "created_by"]
    list_filter = ["role", "campaign"]
    readonly_fields = ["token", "uses", "created_by", "created_at"]


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The audit log is read-only here too: entries are written by the services, never by hand."""

    list_display = ["created_at", "campaign", "actor", "action", "target"]
    list_filter = ["action", "campaign"]
    search_fields = ["action", "target", "actor__username"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
