"""Previews of the judging page, exactly as annotators see it, served by the real judging app.

The preview page is `judge.html` with the judging app's usual configuration, except that its
next / submit / skip / heartbeat URLs point here. These answer like the real API, and submit
checks the answer with the real validation (`annotation.core.judging.validate_answer`), but nothing is
leased or stored. The schema the answers are checked against travels in a signed token in the
URL, so a wizard's unsaved settings can be previewed too.
"""

import random
from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.core import signing
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_http_methods

from annotation.core.handles import answer_from_handles, answer_to_handles
from annotation.core.judging import (
    AnswerError,
    CriteriaError,
    PairwiseOptions,
    validate_answer,
    validate_criteria,
)
from annotation.errors import ApplicationError, ForbiddenError, NotFoundError
from annotation.models import Campaign, Item, ItemResponse, Role
from annotation.selectors import campaign_get_for_user, campaign_live_counts, user_role
from annotation.services.serving import SKIP_REASONS, assignment_handles
from annotation.views.access import campaign_page
from annotation.views.campaigns import SERVICE_FIELD, CampaignForm, criteria_formset, criteria_from
from annotation.views.forms import form_apply_error
from annotation.views.judging import campaign_judge_settings, judge_config

_SALT = "arbiter.judge-preview"
TOKEN_MAX_AGE = 24 * 3600
SAMPLE_ITEM_ID = 1
SAMPLE_MESSAGES = [{"role": "user", "content": "How do I reverse a list in Python? Show me the shortest way."}]
SAMPLE_RESPONSES = [
    "Use slicing:\n\n```python\nitems[::-1]\n```\n\nIt returns a new list; `items.reverse()` reverses in place.",
    "Call `reversed(items)`. It gives an iterator, so wrap it in `list()` when you need a list.",
    "Loop from the end:\n\n```python\nout = []\nfor i in range(len(items) - 1, -1, -1):\n    out.append(items[i])\n```",
]
SAMPLE_SIZE = {"pairwise": 2, "ranking": 3, "rating": 2}


def _token(*, user_id: int, campaign_id: int | None, settings: dict) -> str:
    schema = {
        "kind": settings["kind"],
        "criteria": [{"name": c["name"], "scale": {"min": c["scale"]["min"], "max": c["scale"]["max"]}}
                     for c in settings["criteria"]],
        "options": [settings[k] for k in ("allow_ties", "allow_both_bad", "use_strength", "require_rationale",
                                          "allow_editing")],
        "lease": settings["lease_seconds"],
    }
    return signing.dumps({"u": user_id, "c": campaign_id, "s": schema}, salt=_SALT, compress=True)


def _render_preview(request: HttpRequest, *, settings: dict, campaign: Campaign | None, name: str) -> HttpResponse:
    token = _token(user_id=request.user.pk, campaign_id=campaign.pk if campaign else None, settings=settings)
    base = reverse("preview_next", kwargs={"token": token})
    action = reverse("preview_action", kwargs={"token": token, "action": "ACTION", "item_id": 0})
    urls = {
        "nextUrl": base,
        "submitUrlTemplate": action.replace("/ACTION/0/", "/submit/{id}/"),
        "skipUrlTemplate": action.replace("/ACTION/0/", "/skip/{id}/"),
        "heartbeatUrlTemplate": action.replace("/ACTION/0/", "/heartbeat/{id}/"),
    }
    config = judge_config(request, settings=settings, urls=urls, campaign_id=campaign.pk if campaign else None,
                          name=name)
    return render(request, "annotation/judge.html", {
        "campaign": campaign, "kind": settings["kind"], "name": name, "judge_config": config, "preview": True,
        "sample": campaign is None or not campaign.items.exists(),
    })


@xframe_options_sameorigin  # shown in the wizard's preview frame
@login_required
@require_http_methods(["POST"])
def campaign_preview_draft(request: HttpRequest) -> HttpResponse:
    """Render the judging page for the wizard's unsaved settings (posted by the wizard into a frame)."""
    if user_role(request.user) != Role.MANAGER:
        return render(request, "403.html", status=403)
    form = CampaignForm(request.POST)
    criteria = criteria_formset(request.POST)
    if form.is_valid() and criteria.is_valid():
        settings = {**form.service_kwargs(), "criteria": criteria_from(criteria)}
        try:
            settings["criteria"] = [c.as_dict() for c in validate_criteria(settings["kind"], settings["criteria"])]
        except CriteriaError as exc:
            field = str(exc).split(":", 1)[0].split("[", 1)[0].split(".", 1)[0]
            form_apply_error(form, ApplicationError(str(exc), extra={"fields": {field: [str(exc)]}}),
                             renames=SERVICE_FIELD, formset=criteria)
        else:
            return _render_preview(request, settings=settings, campaign=_items_from(request, settings["kind"]),
                                   name=settings["name"])
    problems = [f"{form[f].label}: {' '.join(e)}" if f in form.fields else " ".join(e)
                for f, e in form.errors.items()]
    for k, row in enumerate(criteria.forms):
        problems += [f"Criterion {k + 1}: {' '.join(e)}" for e in row.errors.values()]
    problems += list(criteria.non_form_errors())
    return render(request, "annotation/preview_problems.html", {"problems": problems})


def _items_from(request: HttpRequest, kind: str) -> Campaign | None:
    """Return the campaign whose items the draft preview shows (settings of an existing campaign, same kind)."""
    raw = request.POST.get("preview_campaign", "")
    if not raw.isdigit():
        return None
    try:
        campaign = campaign_get_for_user(user=request.user, campaign_id=int(raw), roles=[Role.MANAGER])
    except ApplicationError:
        return None
    return campaign if campaign.kind == kind else None


@xframe_options_sameorigin
@campaign_page(Role.MANAGER)
@require_http_methods(["GET"])
def campaign_preview(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    """Render the campaign's judging page as its annotators see it, with its own items; nothing is stored."""
    return _render_preview(request, settings=campaign_judge_settings(campaign), campaign=campaign,
                           name=campaign.name)


def _load(request: HttpRequest, token: str) -> tuple[dict, Campaign | None]:
    if user_role(request.user) != Role.MANAGER:
        raise ForbiddenError("Only managers preview judging pages.")
    try:
        data = signing.loads(token, salt=_SALT, max_age=TOKEN_MAX_AGE)
    except signing.SignatureExpired as exc:
        raise ApplicationError("This preview is more than a day old; open the preview again.") from exc
    except signing.BadSignature as exc:
        raise NotFoundError("Preview not found.") from exc
    if data.get("u") != request.user.pk:
        raise NotFoundError("Preview not found.")
    campaign = None
    if data.get("c") is not None:
        campaign = campaign_get_for_user(user=request.user, campaign_id=data["c"], roles=[Role.MANAGER])
    return data["s"], campaign


def _item(campaign: Campaign | None, item_id: int | None) -> tuple[int, list[dict], list[dict]] | None:
    """Return (item id, messages, responses) of a campaign item (a random one if None) or of the sample."""
    if campaign is not None and campaign.items.exists():
        items = Item.objects.filter(campaign=campaign, is_gold=False)
        if item_id is None:
            ids = list(items.order_by("pk").values_list("pk", flat=True)[:500])
            item_id = random.choice(ids) if ids else None
        item = items.select_related("prompt").filter(pk=item_id).first() if item_id else None
        if item is None:
            return None
        links = ItemResponse.objects.filter(item=item).order_by("position").values_list("response_id", "response__content")
        return item.pk, item.prompt.messages, [{"id": rid, "content": text} for rid, text in links]
    return None


def _sample(kind: str) -> tuple[int, list[dict], list[dict]]:
    n = SAMPLE_SIZE.get(kind, 2)
    return SAMPLE_ITEM_ID, SAMPLE_MESSAGES, [{"id": k + 1, "content": SAMPLE_RESPONSES[k]} for k in range(n)]


def _handles(request: HttpRequest, item_id: int, responses: list[dict]) -> dict[int, str]:
    """The preview's handles for an item's responses, as the real `next` names them: opaque, no order."""
    return assignment_handles(f"preview:{request.user.pk}:{item_id}", [r["id"] for r in responses])


def _json_error(exc: ApplicationError) -> JsonResponse:
    return JsonResponse({"message": exc.message, "extra": exc.extra}, status=exc.status_code)


@login_required
@require_http_methods(["POST"])
def preview_next(request: HttpRequest, token: str) -> HttpResponse:
    """Answer like the API's `next`: an item in a random display order, with no model names; nothing is leased."""
    try:
        schema, campaign = _load(request, token)
    except ApplicationError as exc:
        return _json_error(exc)
    item_id, messages, responses = _item(campaign, None) or _sample(schema["kind"])
    random.SystemRandom().shuffle(responses)
    handles = _handles(request, item_id, responses)
    responses = [{"id": handles[r["id"]], "content": r["content"]} for r in responses]
    expires = timezone.now() + timedelta(seconds=schema["lease"])
    counts = campaign_live_counts(campaign_id=campaign.pk) if campaign else {"done": 0, "wanted": 1}
    return JsonResponse({
        "assignment": {"id": item_id, "expires_at": expires.isoformat(),
                       "item": {"id": item_id, "messages": messages, "responses": responses}},
        "progress": {"done": counts["done"], "total": counts["wanted"], "mine": 0},
    })


@login_required
@require_http_methods(["POST"])
def preview_action(request: HttpRequest, token: str, action: str, item_id: int) -> HttpResponse:
    """Answer like the API's submit / skip / heartbeat: submit checks the answer for real, nothing is stored."""
    import json

    try:
        schema, campaign = _load(request, token)
        found = _item(campaign, item_id) or (_sample(schema["kind"]) if item_id == SAMPLE_ITEM_ID else None)
        if found is None:
            raise NotFoundError("Item not found in this preview.")
        response_ids = [r["id"] for r in found[2]]
        handles = _handles(request, item_id, found[2])
        now = timezone.now()
        if action == "heartbeat":
            expires = now + timedelta(seconds=schema["lease"])
            return JsonResponse({"id": item_id, "status": "leased", "expires_at": expires.isoformat()})
        body = json.loads(request.body or b"{}")
        if action == "skip":
            reason = (body.get("reason") or "").strip()
            if reason and reason not in SKIP_REASONS:
                raise ApplicationError(f"reason: must be one of {', '.join(SKIP_REASONS)}")
            return JsonResponse({"id": item_id, "status": "skipped"})
        if action != "submit":
            raise NotFoundError(f"No preview action called {action!r}.")
        options = PairwiseOptions(*schema["options"])
        try:
            criteria = validate_criteria(schema["kind"], schema["criteria"])
            cleaned = validate_answer(answer_from_handles(body, handles), kind=schema["kind"], options=options,
                                      response_ids=response_ids, criteria=criteria, shown_as=handles)
        except AnswerError as exc:
            raise ApplicationError(f"{exc.field}: {exc.message}", extra={"fields": {exc.field: [exc.message]}}) from exc
        return JsonResponse({
            "id": 0, "assignment_id": item_id, "outcome": cleaned.outcome,
            "preferred_response_id": handles.get(cleaned.preferred_response_id), "strength": cleaned.strength,
            "answer": answer_to_handles(cleaned.answer, handles), "created_at": now.isoformat(), "preview": True,
        }, status=201)
    except ValueError:
        return JsonResponse({"message": "The request body is not valid JSON.", "extra": {}}, status=400)
    except ApplicationError as exc:
        return _json_error(exc)
