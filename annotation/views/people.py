"""The people page of a campaign: members, caps, pause, exclusion, removal, and invite links."""

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from annotation.errors import ApplicationError, NotFoundError
from annotation.models import Campaign, Role
from annotation.services.people import (
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
    membership_set_active,
    membership_set_cap,
    membership_set_excluded,
)
from annotation.views.access import campaign_page
from annotation.views.forms import form_apply_error

# --- Forms ----------------------------------------------------------------------------------------


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)
    cap = forms.IntegerField(min_value=1, required=False, label="Cap (judgments)",
                             help_text="Empty: no cap.")


class MemberCapForm(forms.Form):
    cap = forms.IntegerField(min_value=1, required=False, label="Cap")


INVITE_LIFETIMES = [("1", "1 hour"), ("24", "1 day"), ("168", "7 days"), ("720", "30 days")]


class InviteForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)
    expires_in = forms.TypedChoiceField(choices=INVITE_LIFETIMES, coerce=int, initial="168", label="Valid for")
    max_uses = forms.IntegerField(min_value=1, required=False, label="Most uses",
                                  help_text="Empty: anyone with the link, until it expires.")
    cap = forms.IntegerField(min_value=1, required=False, label="Cap for who joins",
                             help_text="Empty: no cap.")


# --- Pages ----------------------------------------------------------------------------------------


def _people_context(request: HttpRequest, campaign: Campaign, **forms) -> dict:
    now = timezone.now()
    invites = [
        {"invite": i, "state": invite_state(i, now=now),
         "url": request.build_absolute_uri(reverse("invite_accept", kwargs={"token": i.token}))}
        for i in invite_list(campaign=campaign)
    ]
    return {
        "campaign": campaign,
        "members": list(membership_list(campaign=campaign)),
        "invites": invites,
        "add_form": forms.get("add_form") or MemberAddForm(),
        "invite_form": forms.get("invite_form") or InviteForm(),
        "closed": campaign.status == Campaign.Status.CLOSED,
    }


@campaign_page(Role.MANAGER)
@require_http_methods(["GET"])
def campaign_people_page(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    """List members (with their counts and gold accuracy) and invite links, with the actions on them."""
    return render(request, "annotation/campaign_people.html", _people_context(request, campaign))


@campaign_page(Role.MANAGER)
@require_http_methods(["POST"])
def campaign_member_add_page(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    """Add a member by username."""
    form = MemberAddForm(request.POST)
    if form.is_valid():
        try:
            m = membership_add_by_username(campaign=campaign, actor=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            form_apply_error(form, exc)
        else:
            article = "an" if m.role == Role.ANNOTATOR else "a"
            messages.success(request, f"{m.user.get_username()} is now {article} {m.role} in this campaign.")
            return redirect("campaign_people", campaign_id=campaign.pk)
    return render(request, "annotation/campaign_people.html", _people_context(request, campaign, add_form=form),
                  status=400)


MEMBER_ACTIONS = ("pause", "resume", "exclude", "include", "cap", "remove")


@campaign_page(Role.MANAGER)
@require_http_methods(["POST"])
def campaign_member_update_page(request: HttpRequest, campaign: Campaign, user_id: int) -> HttpResponse:
    """Pause, resume, exclude, include, cap or remove one member (the `action` field says which)."""
    action = request.POST.get("action", "")
    try:
        membership = membership_get(campaign=campaign, user_id=user_id)
        name = membership.user.get_username()
        if action in ("pause", "resume"):
            membership_set_active(membership=membership, actor=request.user, active=action == "resume")
            done = f"{name} is paused: served nothing until resumed." if action == "pause" else f"{name} is resumed."
        elif action in ("exclude", "include"):
            membership_set_excluded(membership=membership, actor=request.user, excluded=action == "exclude")
            done = (f"{name}'s judgments are left out of aggregation." if action == "exclude"
                    else f"{name}'s judgments count again.")
        elif action == "cap":
            form = MemberCapForm(request.POST)
            if not form.is_valid():
                messages.error(request, f"Cap for {name}: " + " ".join(form.errors["cap"]))
                return redirect("campaign_people", campaign_id=campaign.pk)
            cap = form.cleaned_data["cap"]
            membership_set_cap(membership=membership, actor=request.user, cap=cap)
            done = f"{name} may make at most {cap} judgments." if cap else f"{name} has no cap."
        elif action == "remove":
            membership_remove(membership=membership, actor=request.user)
            done = f"{name} was removed from the campaign."
        else:
            messages.error(request, f"action: must be one of {', '.join(MEMBER_ACTIONS)}")
            return redirect("campaign_people", campaign_id=campaign.pk)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
    return redirect("campaign_people", campaign_id=campaign.pk)


@campaign_page(Role.MANAGER)
@require_http_methods(["POST"])
def campaign_invite_create_page(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    """Create an invite link."""
    form = InviteForm(request.POST)
    if form.is_valid():
        d = form.cleaned_data
        try:
            invite_create(campaign=campaign, actor=request.user, role=d["role"], cap=d["cap"], max_uses=d["max_uses"],
                          expires_at=timezone.now() + timedelta(hours=d["expires_in"]))
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Invite link created: copy it from the list below.")
            return redirect("campaign_people", campaign_id=campaign.pk)
    return render(request, "annotation/campaign_people.html", _people_context(request, campaign, invite_form=form),
                  status=400)


@campaign_page(Role.MANAGER)
@require_http_methods(["POST"])
def campaign_invite_revoke_page(request: HttpRequest, campaign: Campaign, invite_id: int) -> HttpResponse:
    """Revoke an invite link."""
    try:
        invite_revoke(invite=invite_get(campaign=campaign, invite_id=invite_id), actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "The invite link was revoked; it no longer works.")
    return redirect("campaign_people", campaign_id=campaign.pk)


@login_required
@require_http_methods(["GET"])
def invite_accept_page(request: HttpRequest, token: str) -> HttpResponse:
    """Join the invite's campaign (signed in), or say clearly why the link no longer works."""
    try:
        membership, joined = invite_accept(token=token, user=request.user)
    except ApplicationError as exc:
        status = 404 if isinstance(exc, NotFoundError) else exc.status_code
        return render(request, "annotation/invite_refused.html", {"message": exc.message}, status=status)
    campaign = membership.campaign
    if joined:
        messages.success(request, f"You joined “{campaign.name}” as {membership.role}.")
    else:
        messages.info(request, f"You are already a member of “{campaign.name}”.")
    if membership.role == Role.ANNOTATOR:
        return redirect("campaign_judge", campaign_id=campaign.pk)
    return redirect("campaign_detail", campaign_id=campaign.pk)
