"""The "Generate next round" page: sample replies from chosen checkpoints and open the next round.

The campaign's managers (and superusers) pick policies — succeeded PPO/DPO runs' models or any
model folder under ARBITER_MODEL_ROOTS — and the sampling and selection settings. The request is
checked here, queued for the worker (`training.rounds.tasks.generate_round`), and the page then follows it:
it refreshes while the replies are generated and opens the new round's campaign when it is ready,
or shows why it failed. Past requests are read from the campaign's audit log.
"""

from __future__ import annotations

from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotation.errors import ApplicationError
from annotation.models import AuditEntry, Campaign, Role
from annotation.views.access import campaign_page
from annotation.views.forms import form_apply_error
from training.models import TrainingRun
from training.rounds.services import (
    FAILED,
    LIMITS,
    OPENED,
    QUEUED,
    SELECTIONS,
    is_reward_model,
    round_model_roots,
    round_queue,
    round_request_clean,
)
from training.selectors import base_models_available, training_run_list_for_user

SESSION_KEY = "round_requests"  # campaign id -> token of the request this browser is following


class RoundForm(forms.Form):
    checkpoints = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        label="Checkpoints",
        help_text="Policies to sample from. Each reply is stored with its checkpoint's name, which annotators never see.",
    )
    k = forms.IntegerField(
        label="Replies per prompt and checkpoint (K)", initial=2, min_value=LIMITS["k"][0], max_value=LIMITS["k"][1]
    )
    max_new_tokens = forms.IntegerField(
        label="Most tokens per reply", initial=256, min_value=1, max_value=LIMITS["max_new_tokens"][1]
    )
    temperature = forms.FloatField(
        initial=0.7, min_value=0.0, max_value=2.0, help_text="0 decodes greedily (the K replies are then identical)."
    )
    top_p = forms.FloatField(label="Top-p", initial=1.0, min_value=0.01, max_value=1.0)
    selection = forms.ChoiceField(
        choices=list(SELECTIONS.items()),
        initial="random",
        widget=forms.RadioSelect,
        help_text="Pairwise campaigns: which pairs of replies to show.",
    )
    reward_model = forms.ChoiceField(
        required=False,
        label="Reward model",
        help_text="Scores every reply for “least sure” selection: the pairs whose win probability is nearest 50%.",
    )
    pairs_per_prompt = forms.IntegerField(
        initial=1, min_value=1, max_value=LIMITS["pairs_per_prompt"][1], help_text="Pairwise campaigns only."
    )
    max_prompts = forms.IntegerField(
        required=False,
        min_value=1,
        label="Most prompts",
        help_text="Leave empty to use every prompt; otherwise a random sample of this many.",
    )
    name = forms.CharField(required=False, max_length=200, help_text="Defaults to “<campaign> — round N”.")
    seed = forms.IntegerField(initial=0, min_value=0, max_value=LIMITS["seed"][1])
    activate = forms.BooleanField(
        required=False, initial=True, label="Activate the round as soon as it is ready"
    )

    def __init__(self, *args, policies: list[tuple[str, str]], rewards: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["checkpoints"].choices = policies
        self.fields["reward_model"].choices = [("", "—")] + rewards


@campaign_page(Role.MANAGER)
@require_http_methods(["GET", "POST"])
def campaign_round_new(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    """Show the form and the campaign's round requests; queue a new one on POST."""
    following = request.session.get(SESSION_KEY, {}).get(str(campaign.pk))
    history = round_requests(campaign=campaign)
    if request.method == "GET" and following:
        done = next((r for r in history if r["token"] == following), None)
        if done is not None and done["state"] == "opened":
            _stop_following(request, campaign)
            messages.success(request, f"Round {done['round_number']} is ready: {done['items']} items.")
            return redirect("campaign_detail", campaign_id=done["campaign_id"])
        if done is not None and done["state"] == "failed":
            _stop_following(request, campaign)
            messages.error(request, f"Generating the next round failed: {done['error']}")
            following = None

    policies, rewards = policy_choices(user=request.user), reward_model_choices(user=request.user)
    form = RoundForm(request.POST or None, policies=policies, rewards=rewards)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            round_request = round_request_clean(
                campaign=campaign,
                checkpoints=data["checkpoints"],
                k=data["k"],
                max_new_tokens=data["max_new_tokens"],
                temperature=data["temperature"],
                top_p=data["top_p"],
                selection=data["selection"],
                reward_model=data["reward_model"] or None,
                pairs_per_prompt=data["pairs_per_prompt"],
                name=data["name"] or None,
                seed=data["seed"],
                max_prompts=data["max_prompts"],
                activate=data["activate"],
            )
            round_queue(campaign=campaign, request=round_request, created_by=request.user)
        except ApplicationError as exc:
            form_apply_error(form, exc)
        else:
            request.session[SESSION_KEY] = {**request.session.get(SESSION_KEY, {}), str(campaign.pk): round_request.token}
            messages.info(request, "Generating replies in the background; this page opens the new round when it is ready.")
            return redirect("campaign_round_new", campaign_id=campaign.pk)
    rounds = Campaign.objects.filter(parent=campaign, round_number=campaign.round_number + 1).order_by("-created_at")
    return render(
        request,
        "training/round_new.html",
        {
            "campaign": campaign,
            "form": form,
            "history": history,
            "rounds": rounds,
            "following": following,
            "pending": any(r["state"] == "generating" for r in history),
            "has_policies": bool(policies),
            "roots": [str(r) for r in round_model_roots()],
        },
    )


def round_requests(*, campaign: Campaign, limit: int = 10) -> list[dict]:
    """Return the campaign's latest round requests, newest first, each with its state.

    State: "generating" (queued, no outcome yet), "opened" (with the new campaign) or "failed"
    (with the error), matched by the request's token in the audit log.
    """
    entries = list(
        AuditEntry.objects.filter(campaign=campaign, action__in=[QUEUED, OPENED, FAILED])
        .select_related("actor")
        .order_by("-created_at", "-id")[: limit * 3]
    )
    outcomes: dict[str, AuditEntry] = {}
    for e in entries:
        token = (e.after or {}).get("request") if e.action == OPENED else e.target.removeprefix("round:")
        if e.action != QUEUED and token:
            outcomes.setdefault(token, e)
    out = []
    for e in entries:
        if e.action != QUEUED:
            continue
        token = e.target.removeprefix("round:")
        after = e.after or {}
        row = {
            "token": token,
            "queued_at": e.created_at,
            "actor": e.actor.get_username() if e.actor else "",
            "checkpoints": [label for label, _ in after.get("checkpoints", [])],
            "k": after.get("k"),
            "selection": after.get("selection"),
            "state": "generating",
        }
        outcome = outcomes.get(token)
        if outcome is not None and outcome.action == OPENED:
            summary = outcome.after or {}
            row.update(
                state="opened",
                campaign_id=int(outcome.target.removeprefix("campaign:")),
                round_number=summary.get("round_number"),
                items=summary.get("items"),
                skipped=summary.get("skipped_prompts"),
            )
        elif outcome is not None:
            row.update(state="failed", error=(outcome.after or {}).get("error", ""))
        out.append(row)
        if len(out) == limit:
            break
    return out


def policy_choices(*, user) -> list[tuple[str, str]]:
    """Return (path, label) of the policies the user may sample from: PPO/DPO runs, then model folders."""
    return _run_models(user, kinds=("ppo", "dpo")) + _folder_models(classifiers=False)


def reward_model_choices(*, user) -> list[tuple[str, str]]:
    """Return (path, label) of the reward models the user may score with: reward runs, then folders."""
    return _run_models(user, kinds=("reward",)) + _folder_models(classifiers=True)


def _run_models(user, *, kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    runs = training_run_list_for_user(user=user).filter(kind__in=kinds, status=TrainingRun.Status.SUCCEEDED)
    for run in runs[:50]:
        artifacts = run.artifacts or {}
        model = artifacts.get("model") or (Path(artifacts["output_dir"]) / "model" if artifacts.get("output_dir") else None)
        if model is not None and (Path(model) / "config.json").is_file():
            finished = f", {run.finished_at:%Y-%m-%d %H:%M}" if run.finished_at else ""
            out.append((str(model), f"{run.get_kind_display()} run {run.pk}{finished}"))
    return out


def _folder_models(*, classifiers: bool) -> list[tuple[str, str]]:
    # Runs' folders (ARBITER_TRAINING_DIR) are offered run by run above, not checkpoint by checkpoint.
    roots = [Path(r) for r in settings.ARBITER_MODEL_ROOTS]
    out = []
    for path in base_models_available(roots=roots):
        if is_reward_model(path) == classifiers:
            root = next((r.resolve() for r in roots if path.is_relative_to(r.resolve())), None)
            out.append((str(path), str(path.relative_to(root)) if root and path != root else path.name))
    return out


def _stop_following(request: HttpRequest, campaign: Campaign) -> None:
    following = dict(request.session.get(SESSION_KEY, {}))
    following.pop(str(campaign.pk), None)
    request.session[SESSION_KEY] = following
