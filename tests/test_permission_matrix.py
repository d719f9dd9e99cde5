"""Permission matrix: every URL route of the project x every role -> the expected HTTP status.

How it works
------------
* `_walk()` walks `django.urls.get_resolver()` recursively and yields every route with its full
  route string and its full name (namespace included, e.g. ``api:assignment_next``).
* `RULES` maps every non-admin route name to one or more `Rule`s: a method, a request body and
  the expected outcome for each of the seven roles. `test_every_route_has_a_rule` fails when a
  route is added without a rule (or a rule is left behind when a route is removed).
* The Django admin is covered by one prefix rule (`ADMIN_PREFIX`): every admin route must live
  under ``admin/``; `test_admin_routes` requests every named admin route for every role.
* `test_permission_cell` runs one request per (route, method, role), each on fresh database state.

Conventions for a cell
----------------------
Allowed roles get a 2xx (or, for a page that redirects on success, a 302 somewhere other than the
login page). Denied roles get 302-to-login (pages), 403 (wrong global role, or wrong role in the
campaign) or 404 (not a member: a forged id reveals nothing). Write endpoints get *valid* bodies:
the API views validate the body before they look the campaign/assignment up, so an invalid body
would answer 400 before the object-level check is reached and the cell would test nothing.

Anonymous API requests get 401 (`ANON_API`), with `WWW-Authenticate: Token`: DRF answers
NotAuthenticated with 401 only when the *first* authentication class sends a `WWW-Authenticate`
header. TokenAuthentication is listed first in REST_FRAMEWORK; were SessionAuthentication first
(it sends no header), anonymous callers would get 403 and every anonymous API cell would fail.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.shortcuts import resolve_url
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rest_framework.views import APIView

from annotation.models import Assignment, AuditEntry, Campaign, Judgment, Membership, Role
from annotation.services.serving import assignment_lease_next, judgment_submit
from tests.conftest import PASSWORD, jsonl, pair_rows

ROLES = ("anonymous", "annotator", "outsider", "researcher", "manager", "other_manager", "superuser")
MEMBERS_OF_A = {"annotator", "researcher", "manager"}
ADMIN_PREFIX = "admin/"
ADMIN_NAMESPACE = "admin"
ANON_API = 401  # see the module docstring


# --- Walking the URLconf ----------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    route: str  # full route string, e.g. "api/v1/campaigns/<int:campaign_id>/next/"
    name: str | None  # full name with namespaces, e.g. "api:assignment_next"; None when unnamed
    callback: Callable

    @property
    def key(self) -> str:
        return self.name or f"<unnamed {self.route!r}>"


def _walk(resolver: URLResolver | None = None, prefix: str = "", namespace: str = "") -> Iterator[Route]:
    resolver = resolver or get_resolver()
    for p in resolver.url_patterns:
        # str() of a RoutePattern is its route; of a RegexPattern its regex (kept as written).
        piece = str(p.pattern)
        if isinstance(p, URLResolver):
            ns = namespace
            if p.namespace:
                ns = f"{namespace}:{p.namespace}" if namespace else p.namespace
            yield from _walk(p, prefix + piece, ns)
        elif isinstance(p, URLPattern):
            name = None
            if p.name:
                name = f"{namespace}:{p.name}" if namespace else p.name
            yield Route(route=prefix + piece, name=name, callback=p.callback)
        else:  # pragma: no cover - Django has only these two kinds
            raise TypeError(f"unknown URL pattern type {type(p)!r}")


def _is_admin(route: Route) -> bool:
    return route.route.startswith(ADMIN_PREFIX)


# --- Expectations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToLogin:
    """302 to the site login page (pages behind @login_required)."""

    def __str__(self) -> str:
        return "302→login"


@dataclass(frozen=True)
class RedirectTo:
    """302 to a named route of campaign A (or one without kwargs)."""

    name: str
    campaign_kwarg: bool = True

    def __str__(self) -> str:
        return f"302→{self.name}"


LOGIN = ToLogin()
Expect = int | ToLogin | RedirectTo


@dataclass(frozen=True)
class XFail:
    """A cell that fails because of an app bug: expected value, and why it fails today."""

    expect: Expect
    reason: str


@dataclass
class World:
    users: dict[str, Any]
    campaign: Campaign
    assignment: Assignment  # leased to `annotator` in campaign A


Body = Callable[[World, str], dict | None]
Check = Callable[[Any, World, str], None]


@dataclass
class Rule:
    method: str
    expect: dict[str, Expect | XFail]
    body: Body | None = None
    multipart: bool = False
    check: Check | None = None
    note: str = ""
    kwargs: Callable[[World], dict] | None = field(default=None)

    def __post_init__(self) -> None:
        missing = set(ROLES) - set(self.expect)
        extra = set(self.expect) - set(ROLES)
        assert not missing and not extra, f"rule must give every role a cell: missing {missing}, unknown {extra}"


def cells(anonymous, annotator, outsider, researcher, manager, other_manager, superuser) -> dict[str, Expect]:
    return dict(
        anonymous=anonymous, annotator=annotator, outsider=outsider, researcher=researcher,
        manager=manager, other_manager=other_manager, superuser=superuser,
    )


def _campaign_kwargs(w: World) -> dict:
    return {"campaign_id": w.campaign.pk}


def _assignment_kwargs(w: World) -> dict:
    return {"assignment_id": w.assignment.pk}


def _import_file() -> io.BytesIO:
    f = io.BytesIO("\n".join(jsonl(pair_rows(2, prefix="matrix"))).encode())
    f.name = "items.jsonl"
    return f


def _dataset_kwargs(w: World, **extra) -> dict:
    """A ready dataset of campaign A, built from judgments annotator2 makes through the services."""
    from annotation.services.datasets import dataset_build, dataset_create

    annotator2 = get_user_model().objects.get(username="ann2")
    while (a := assignment_lease_next(campaign_id=w.campaign.pk, annotator=annotator2)) is not None:
        judgment_submit(assignment_id=a.pk, annotator=annotator2,
                        answer={"outcome": "preferred", "preferred_response_id": a.display_order[0], "strength": 2})
    dataset = dataset_create(campaign=w.campaign, method="majority", params={"bootstrap_rounds": 20},
                             created_by=w.users["manager"])
    dataset = dataset_build(dataset_id=dataset.pk)
    assert dataset.status == "ready", dataset.error
    return {"dataset_id": dataset.pk, **extra}


_TINY: dict[str, Any] = {}  # tiny models (and one trained on them) built once per test session


def _tiny_dir() -> Any:
    """Build the tiny models once (training.tiny), in a folder removed when the tests end."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    if "dir" not in _TINY:
        from training.tiny import build_tiny_models

        folder = Path(tempfile.mkdtemp(prefix="arbiter-matrix-tiny-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        build_tiny_models(folder)
        _TINY["dir"] = folder
    return _TINY["dir"]


def _tiny_reward_base() -> str:
    """A copy of the tiny reward base under this test's model root (a few hundred kB)."""
    import shutil
    from pathlib import Path

    from django.conf import settings

    target = Path(settings.ARBITER_MODEL_ROOTS[0]) / "tiny-reward-base"
    if not target.exists():
        shutil.copytree(_tiny_dir() / "tiny-reward-base", target)
    return str(target)


def _trained_reward_model() -> str:
    """A reward model trained for two steps on the tiny base (once), for the score endpoint."""
    if "trained" not in _TINY:
        from training.config import RewardModelConfig
        from training.reward import train_reward_model
        from training.tiny import polite_preferences

        config = RewardModelConfig(output_dir=str(_tiny_dir() / "trained"), max_steps=2, per_device_train_batch_size=4,
                                   eval_fraction=0.0, max_length=64, save_steps=100)  # fmt: skip
        result = train_reward_model(config, dataset=polite_preferences(8), base_model_path=_tiny_dir() / "tiny-reward-base")
        _TINY["trained"] = str(result.artifact_dir)
    return _TINY["trained"]


def _training_body(w: World, r: str) -> dict:
    return {"dataset_id": _dataset_kwargs(w)["dataset_id"], "base_model_path": _tiny_reward_base(),
            "config": {"max_steps": 2}}


def _training_run(w: World):
    """A queued reward-model run on a dataset of campaign A (never sent: the test's transaction never commits)."""
    from annotation.models import Dataset
    from training.services import training_run_create

    dataset = Dataset.objects.get(pk=_dataset_kwargs(w)["dataset_id"])
    return training_run_create(dataset=dataset, base_model_path=_tiny_reward_base(), config={"max_steps": 2},
                               created_by=w.users["manager"])  # fmt: skip


def _training_run_kwargs(w: World) -> dict:
    return {"run_id": _training_run(w).pk}


def _cancelled_run_kwargs(w: World) -> dict:
    from training.services import training_run_cancel

    run = _training_run(w)
    training_run_cancel(run=run, by=w.users["manager"])
    return {"run_id": run.pk}


def _succeeded_run_kwargs(w: World) -> dict:
    """A run marked succeeded with a real trained model (training itself is tested in tests/training)."""
    from django.utils import timezone

    from training.models import TrainingRun

    run = _training_run(w)
    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded", step=2, total_steps=2, finished_at=timezone.now(),
                                                 artifacts={"model": _trained_reward_model()})  # fmt: skip
    return {"run_id": run.pk}


def _rule_kwargs(w: World) -> dict:
    """A training rule of campaign A (on close), made by its manager."""
    from training.models import TrainingRule

    rule = TrainingRule.objects.create(campaign=w.campaign, kind="on_close", base_model_path="/models/m",
                                       created_by=w.users["manager"])  # fmt: skip
    return {"rule_id": rule.pk}


def _list_with_run_of_a(w: World) -> dict:
    _TINY["run_of_a"] = _training_run(w).pk
    return {}


def _check_run_of_a_listed(response, w: World, role: str) -> None:
    should_see = role in {"researcher", "manager", "superuser"}
    if response.headers.get("Content-Type", "").startswith("application/json"):
        seen = _TINY["run_of_a"] in {r["id"] for r in response.json()}
    else:
        seen = f'href="/training/runs/{_TINY["run_of_a"]}/"' in response.content.decode()
    assert seen == should_see, f"{role} {'cannot' if should_see else 'can'} see campaign A's training run"


def _check_campaign_a_listed(response, w: World, role: str) -> None:
    ids = {c["id"] for c in response.json()}
    should_see = role in MEMBERS_OF_A or role == "superuser"
    assert (w.campaign.pk in ids) == should_see, f"{role} {'cannot' if should_see else 'can'} see campaign A: {ids}"


def _check_home_lists_a(response, w: World, role: str) -> None:
    should_see = role in MEMBERS_OF_A or role == "superuser"
    seen = w.campaign.name in response.content.decode()
    assert seen == should_see, f"{role} {'cannot' if should_see else 'can'} see campaign A on the home page"


def _round_body(w: World, role: str) -> dict:
    """A valid round request: a policy folder (its config.json) under the per-test model root."""
    import json
    from pathlib import Path

    from django.conf import settings

    policy = Path(settings.ARBITER_MODEL_ROOTS[0]) / "policy"
    policy.mkdir(parents=True, exist_ok=True)
    (policy / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    return {"checkpoints": [str(policy)], "k": 2, "temperature": 0.7}


# --- The manager's console (helpers) -------------------------------------------------------------


def _preview_kwargs(w: World, action: str | None = None) -> dict:
    """A preview token of campaign A made for its manager (a token works only for whom it was made)."""
    from annotation.views.judging import campaign_judge_settings
    from annotation.views.preview import _token

    token = _token(user_id=w.users["manager"].pk, campaign_id=w.campaign.pk,
                   settings=campaign_judge_settings(w.campaign))
    if action is None:
        return {"token": token}
    return {"token": token, "action": action, "item_id": w.assignment.item_id}


def _invite(w: World):
    from datetime import timedelta

    from django.utils import timezone

    from annotation.services.people import invite_create

    return invite_create(campaign=w.campaign, actor=w.users["manager"], expires_at=timezone.now() + timedelta(days=1))


def _member_kwargs(w: World) -> dict:
    return {"campaign_id": w.campaign.pk, "user_id": w.users["annotator"].pk}


def _judged_campaign_kwargs(w: World) -> dict:
    """Campaign A with one judgment (by annotator2), so it can be closed into a dataset."""
    annotator2 = get_user_model().objects.get(username="ann2")
    a = assignment_lease_next(campaign_id=w.campaign.pk, annotator=annotator2)
    judgment_submit(assignment_id=a.pk, annotator=annotator2, answer={"outcome": "tie"})
    return _campaign_kwargs(w)


WIZARD_BODY = {"name": "Matrix wizard", "kind": "pairwise", "overlap": "1", "lease_seconds": "600",
               "gold_percent": "0", "instructions": "", "criteria-TOTAL_FORMS": "0", "criteria-INITIAL_FORMS": "0"}


# Denial codes used below:
#   LOGIN  page, not logged in
#   401    API, not logged in (ANON_API, see the module docstring)
#   403    wrong global role, or wrong role in the campaign
#   404    not a member of the campaign / not the owner of the assignment
RULES: dict[str, list[Rule]] = {
    # -- Site auth (public) -----------------------------------------------------------------
    "login": [
        Rule("GET", cells(200, RedirectTo("home", False), RedirectTo("home", False), RedirectTo("home", False),
                          RedirectTo("home", False), RedirectTo("home", False), RedirectTo("home", False)),
             note="public; logged-in users are sent home (redirect_authenticated_user)"),
    ],
    "logout": [
        Rule("POST", cells(*[RedirectTo("login", False)] * 7), note="public, POST only"),
        Rule("GET", cells(*[405] * 7), note="Django 5 LogoutView is POST only"),
    ],
    # -- Pages ------------------------------------------------------------------------------
    "home": [
        Rule("GET", cells(LOGIN, 200, 200, 200, 200, 200, 200), check=_check_home_lists_a),
    ],
    "campaign_new": [
        Rule("GET", cells(LOGIN, 403, 403, 403, 200, 200, 200), note="global managers only"),
        Rule("POST", cells(LOGIN, 403, 403, 403, 200, 200, 200), body=lambda w, r: {"name": ""},
             note="invalid form: allowed roles see it again (200)"),
    ],
    "campaign_detail": [
        Rule("GET", cells(LOGIN, RedirectTo("campaign_judge"), 404, 200, 200, 404, 200), kwargs=_campaign_kwargs,
             note="annotators are sent to the judging page"),
    ],
    "campaign_status": [
        Rule("POST", cells(LOGIN, 403, 404, 403, RedirectTo("campaign_detail"), 404, RedirectTo("campaign_detail")),
             kwargs=_campaign_kwargs, body=lambda w, r: {"status": "paused"}),
    ],
    "campaign_import": [
        Rule("GET", cells(LOGIN, 403, 404, 403, 200, 404, 200), kwargs=_campaign_kwargs),
    ],
    "campaign_judge": [
        Rule("GET", cells(LOGIN, 200, 404, 403, 200, 404, 200), kwargs=_campaign_kwargs),
    ],
    "campaign_dashboard": [
        Rule("GET", cells(LOGIN, 403, 404, 403, 200, 404, 200), kwargs=_campaign_kwargs,
             note="the campaign's managers only: researchers see progress, not per-annotator figures"),
    ],
    # -- API --------------------------------------------------------------------------------
    "api:auth_token": [
        Rule(
            "POST", cells(400, 200, 200, 200, 200, 200, 200),
            body=lambda w, r: {"username": w.users[r].username if w.users[r] else "nobody", "password": PASSWORD},
            note="public; each role posts its own credentials, anonymous posts a user that does not exist",
        ),
    ],
    "api:campaign_list": [
        Rule("GET", cells(ANON_API, 200, 200, 200, 200, 200, 200), check=_check_campaign_a_listed,
             note="outsider/other_manager get a list without campaign A"),
    ],
    "api:campaign_create": [
        Rule("POST", cells(ANON_API, 403, 403, 403, 201, 201, 201), body=lambda w, r: {"name": "Matrix campaign"}),
    ],
    "api:campaign_detail": [
        Rule("GET", cells(ANON_API, 200, 404, 200, 200, 404, 200), kwargs=_campaign_kwargs),
    ],
    "api:campaign_status": [
        Rule("POST", cells(ANON_API, 403, 403, 403, 200, 404, 200), kwargs=_campaign_kwargs,
             body=lambda w, r: {"status": "paused"},
             note="outsider is a global annotator: IsManager denies (403) before the campaign lookup"),
    ],
    "api:campaign_member_add": [
        Rule("POST", cells(ANON_API, 403, 403, 403, 201, 404, 201), kwargs=_campaign_kwargs,
             body=lambda w, r: {"username": "outsider", "role": "annotator"}),
    ],
    "api:campaign_import": [
        Rule("POST", cells(ANON_API, 403, 403, 403, 201, 404, 201), kwargs=_campaign_kwargs, multipart=True,
             body=lambda w, r: {"file": _import_file(), "format": "auto"}),
    ],
    "api:assignment_next": [
        Rule("POST", cells(ANON_API, 200, 404, 403, 200, 404, 200), kwargs=_campaign_kwargs,
             note="researchers fail IsJudge (global role); non-members get 404"),
    ],
    "api:judgment_submit": [
        Rule("POST", cells(ANON_API, 201, 404, 404, 404, 404, 404), kwargs=_assignment_kwargs,
             body=lambda w, r: {"outcome": "tie"},
             note="only the assignment's annotator; anyone else, its campaign's manager too, gets 404"),
    ],
    "api:assignment_skip": [
        Rule("POST", cells(ANON_API, 200, 404, 404, 404, 404, 404), kwargs=_assignment_kwargs, body=lambda w, r: {}),
    ],
    "api:assignment_heartbeat": [
        Rule("POST", cells(ANON_API, 200, 404, 404, 404, 404, 404), kwargs=_assignment_kwargs, body=lambda w, r: {}),
    ],
    # -- Datasets (researcher API): managers and researchers of the campaign read, its managers create --
    "campaign_datasets": [
        Rule("GET", cells(LOGIN, 403, 404, 200, 200, 404, 200), kwargs=_campaign_kwargs),
        Rule("POST", cells(LOGIN, 403, 404, 403, RedirectTo("campaign_datasets"), 404, RedirectTo("campaign_datasets")),
             kwargs=_campaign_kwargs, body=lambda w, r: {"method": "majority"},
             note="researchers see the list but never write"),
    ],
    "dataset_detail": [
        Rule("GET", cells(LOGIN, 403, 404, 200, 200, 404, 200), kwargs=_dataset_kwargs),
    ],
    "api:dataset_list": [
        Rule("GET", cells(ANON_API, 403, 404, 200, 200, 404, 200), kwargs=_campaign_kwargs),
    ],
    "api:dataset_create": [
        Rule("POST", cells(ANON_API, 403, 403, 403, 201, 404, 201), kwargs=_campaign_kwargs,
             body=lambda w, r: {"method": "majority"},
             note="IsManager denies non-managers (403) before the campaign lookup"),
    ],
    "api:dataset_detail": [
        Rule("GET", cells(ANON_API, 403, 404, 200, 200, 404, 200), kwargs=_dataset_kwargs),
    ],
    "api:dataset_leaderboard": [
        Rule("GET", cells(ANON_API, 403, 404, 200, 200, 404, 200), kwargs=_dataset_kwargs),
    ],
    "api:dataset_card": [
        Rule("GET", cells(ANON_API, 403, 404, 200, 200, 404, 200), kwargs=_dataset_kwargs),
    ],
    "api:dataset_export": [
        Rule("GET", cells(ANON_API, 403, 404, 200, 200, 404, 200),
             kwargs=lambda w: _dataset_kwargs(w, kind="preference")),
    ],
    "api:campaign_judgments_export": [
        Rule("GET", cells(ANON_API, 403, 404, 200, 200, 404, 200), kwargs=_campaign_kwargs),
    ],
    "api:campaign_dashboard": [
        Rule("GET", cells(ANON_API, 403, 403, 403, 200, 404, 200), kwargs=_campaign_kwargs,
             note="IsManager denies non-managers (403) before the campaign lookup; other managers get 404"),
    ],
    # -- Next round (generation runs in the worker after commit; the test transaction never commits) --
    "campaign_round_new": [
        Rule("GET", cells(LOGIN, 403, 404, 403, 200, 404, 200), kwargs=_campaign_kwargs),
        Rule("POST", cells(LOGIN, 403, 404, 403, RedirectTo("campaign_round_new"), 404,
                           RedirectTo("campaign_round_new")),
             kwargs=_campaign_kwargs,
             body=lambda w, r: {**_round_body(w, r), "max_new_tokens": 16, "top_p": 1.0, "selection": "random",
                                "pairs_per_prompt": 1, "seed": 0},
             note="the campaign's managers only; the page follows the queued request"),
    ],
    "api:campaign_round_create": [
        Rule("POST", cells(ANON_API, 403, 403, 403, 202, 404, 202), kwargs=_campaign_kwargs, body=_round_body,
             note="IsManager denies non-managers (403) before the campaign lookup; other managers get 404"),
    ],
    # -- The manager's console: managers of the campaign only (previews: global managers) ----------
    "campaign_import_confirm": [
        Rule("POST", cells(LOGIN, 403, 404, 403, RedirectTo("campaign_import"), 404, RedirectTo("campaign_import")),
             kwargs=_campaign_kwargs, body=lambda w, r: {"token": "no-such-upload-token"},
             note="an unknown token commits nothing and goes back to the upload form"),
    ],
    "campaign_preview_draft": [
        Rule("POST", cells(LOGIN, 403, 403, 403, 200, 200, 200), body=lambda w, r: WIZARD_BODY,
             note="global managers preview unsaved wizard settings"),
    ],
    "campaign_preview": [
        Rule("GET", cells(LOGIN, 403, 404, 403, 200, 404, 200), kwargs=_campaign_kwargs),
    ],
    "preview_next": [
        Rule("POST", cells(LOGIN, 403, 403, 403, 200, 404, 404), kwargs=_preview_kwargs,
             note="non-managers 403; a token made for another manager is not found"),
    ],
    "preview_action": [
        Rule("POST", cells(LOGIN, 403, 403, 403, 200, 404, 404), kwargs=lambda w: _preview_kwargs(w, "heartbeat")),
    ],
    "campaign_settings": [
        Rule("GET", cells(LOGIN, 403, 404, 403, 200, 404, 200), kwargs=_campaign_kwargs),
        Rule("POST", cells(LOGIN, 403, 404, 403, RedirectTo("campaign_settings"), 404, RedirectTo("campaign_settings")),
             kwargs=_campaign_kwargs, body=lambda w, r: {**WIZARD_BODY, "name": "Renamed", "overlap": "2"}),
    ],
    "campaign_new_version": [
        Rule("GET", cells(LOGIN, 403, 404, 403, 200, 404, 200), kwargs=_campaign_kwargs),
        Rule("POST", cells(LOGIN, 403, 404, 403, 200, 404, 200), kwargs=_campaign_kwargs, body=lambda w, r: {"name": ""},
             note="invalid form: allowed roles see it again (200)"),
    ],
    "campaign_close": [
        Rule("POST", cells(LOGIN, 403, 404, 403, RedirectTo("campaign_detail"), 404, RedirectTo("campaign_detail")),
             kwargs=_campaign_kwargs, body=lambda w, r: {"method": "majority"},
             note="nothing judged yet: refused with a message on the campaign page"),
    ],
    "campaign_items": [
        Rule("GET", cells(LOGIN, 403, 404, 403, 200, 404, 200), kwargs=_campaign_kwargs),
    ],
    "campaign_audit": [
        Rule("GET", cells(LOGIN, 403, 404, 403, 200, 404, 200), kwargs=_campaign_kwargs),
    ],
    "campaign_people": [
        Rule("GET", cells(LOGIN, 403, 404, 403, 200, 404, 200), kwargs=_campaign_kwargs),
    ],
    "campaign_member_add": [
        Rule("POST", cells(LOGIN, 403, 404, 403, RedirectTo("campaign_people"), 404, RedirectTo("campaign_people")),
             kwargs=_campaign_kwargs, body=lambda w, r: {"username": "outsider", "role": "annotator"}),
    ],
    "campaign_member_update": [
        Rule("POST", cells(LOGIN, 403, 404, 403, RedirectTo("campaign_people"), 404, RedirectTo("campaign_people")),
             kwargs=_member_kwargs, body=lambda w, r: {"action": "pause"}),
    ],
    "campaign_invite_create": [
        Rule("POST", cells(LOGIN, 403, 404, 403, RedirectTo("campaign_people"), 404, RedirectTo("campaign_people")),
             kwargs=_campaign_kwargs, body=lambda w, r: {"role": "annotator", "expires_in": "24"}),
    ],
    "campaign_invite_revoke": [
        Rule("POST", cells(LOGIN, 403, 404, 403, RedirectTo("campaign_people"), 404, RedirectTo("campaign_people")),
             kwargs=lambda w: {"campaign_id": w.campaign.pk, "invite_id": _invite(w).pk}),
    ],
    "invite_accept": [
        Rule("GET", cells(LOGIN, RedirectTo("campaign_judge"), RedirectTo("campaign_judge"), RedirectTo("campaign_detail"),
                          RedirectTo("campaign_detail"), RedirectTo("campaign_judge"), RedirectTo("campaign_judge")),
             kwargs=lambda w: {"token": _invite(w).token},
             note="anyone signed in whose role fits joins (as annotator); members keep their role"),
    ],
    "api:campaign_update": [
        Rule("POST", cells(ANON_API, 403, 403, 403, 200, 404, 200), kwargs=_campaign_kwargs,
             body=lambda w, r: {"name": "Renamed"}),
    ],
    "api:campaign_new_version": [
        Rule("POST", cells(ANON_API, 403, 403, 403, 201, 404, 201), kwargs=_campaign_kwargs,
             body=lambda w, r: {"copy_items": "all"}),
    ],
    "api:campaign_close_into_dataset": [
        Rule("POST", cells(ANON_API, 403, 403, 403, 201, 404, 201), kwargs=_judged_campaign_kwargs,
             body=lambda w, r: {"method": "majority"}),
    ],
    "api:campaign_import_validate": [
        Rule("POST", cells(ANON_API, 403, 403, 403, 200, 404, 200), kwargs=_campaign_kwargs, multipart=True,
             body=lambda w, r: {"file": _import_file(), "format": "auto"}),
    ],
    "api:campaign_items": [
        Rule("GET", cells(ANON_API, 403, 403, 403, 200, 404, 200), kwargs=_campaign_kwargs),
    ],
    "api:campaign_member_list": [
        Rule("GET", cells(ANON_API, 403, 403, 403, 200, 404, 200), kwargs=_campaign_kwargs),
    ],
    "api:campaign_member_update": [
        Rule("POST", cells(ANON_API, 403, 403, 403, 200, 404, 200), kwargs=_member_kwargs,
             body=lambda w, r: {"cap": 5}),
    ],
    "api:campaign_member_remove": [
        Rule("POST", cells(ANON_API, 403, 403, 403, 204, 404, 204), kwargs=_member_kwargs),
    ],
    "api:campaign_invite_list": [
        Rule("GET", cells(ANON_API, 403, 403, 403, 200, 404, 200), kwargs=_campaign_kwargs),
    ],
    "api:campaign_invite_create": [
        Rule("POST", cells(ANON_API, 403, 403, 403, 201, 404, 201), kwargs=_campaign_kwargs, body=lambda w, r: {}),
    ],
    "api:campaign_invite_revoke": [
        Rule("POST", cells(ANON_API, 403, 403, 403, 200, 404, 200),
             kwargs=lambda w: {"campaign_id": w.campaign.pk, "invite_id": _invite(w).pk}),
    ],
    "api:invite_accept": [
        Rule("POST", cells(ANON_API, 200, 200, 200, 200, 200, 200), kwargs=lambda w: {"token": _invite(w).token},
             note="anyone signed in: members are told they already are; others join"),
    ],
    "api:campaign_audit": [
        Rule("GET", cells(ANON_API, 403, 403, 403, 200, 404, 200), kwargs=_campaign_kwargs),
    ],
    # -- Training runs: staff and the campaign's managers start and change them, its researchers read
    #    them; anyone else gets 404 (the views only ask for a login and let the selectors decide) --
    "training_run_list": [
        Rule("GET", cells(LOGIN, 200, 200, 200, 200, 200, 200), kwargs=_list_with_run_of_a,
             check=_check_run_of_a_listed, note="everyone signed in; each sees only the runs they may read"),
    ],
    "training_run_new": [
        Rule("GET", cells(LOGIN, 403, 403, 403, 200, 200, 200), note="global managers and staff only"),
        Rule("POST", cells(LOGIN, 403, 403, 403, 200, 200, 200), body=lambda w, r: {"dataset": ""},
             note="invalid form: allowed roles see it again (200)"),
    ],
    "training_run_detail": [
        Rule("GET", cells(LOGIN, 404, 404, 200, 200, 404, 200), kwargs=_training_run_kwargs),
    ],
    "api:training_run_list": [
        Rule("GET", cells(ANON_API, 200, 200, 200, 200, 200, 200), kwargs=_list_with_run_of_a,
             check=_check_run_of_a_listed),
    ],
    "api:training_run_create": [
        Rule("POST", cells(ANON_API, 404, 404, 403, 201, 404, 201), body=_training_body,
             note="the dataset's campaign decides: its researchers 403, non-managers 404"),
    ],
    "api:training_run_detail": [
        Rule("GET", cells(ANON_API, 404, 404, 200, 200, 404, 200), kwargs=_training_run_kwargs),
    ],
    "api:training_run_cancel": [
        Rule("POST", cells(ANON_API, 404, 404, 403, 200, 404, 200), kwargs=_training_run_kwargs),
    ],
    "api:training_run_resume": [
        Rule("POST", cells(ANON_API, 404, 404, 403, 200, 404, 200), kwargs=_cancelled_run_kwargs),
    ],
    "api:training_run_score": [
        Rule("POST", cells(ANON_API, 404, 404, 200, 200, 404, 200), kwargs=_succeeded_run_kwargs,
             body=lambda w, r: {"pairs": [{"prompt": "Hello?", "response": "Hello."}]},
             note="readers score with a succeeded reward model"),
    ],
    # -- Training rules: the campaign's managers and superusers; its researchers 403, anyone else 404 --
    "training_rule_list": [
        Rule("GET", cells(LOGIN, 404, 404, 403, 200, 404, 200), kwargs=_campaign_kwargs),
    ],
    "training_rule_new": [
        Rule("GET", cells(LOGIN, 404, 404, 403, 200, 404, 200), kwargs=_campaign_kwargs),
        Rule("POST", cells(LOGIN, 404, 404, 403, 400, 404, 400), kwargs=_campaign_kwargs,
             body=lambda w, r: {"kind": "every_n_judgments", "n": "0"},
             note="invalid form: allowed roles see it again (400)"),
    ],
    "training_rule_edit": [
        Rule("GET", cells(LOGIN, 404, 404, 403, 200, 404, 200), kwargs=_rule_kwargs),
        Rule("POST", cells(LOGIN, 404, 404, 403, 400, 404, 400), kwargs=_rule_kwargs,
             body=lambda w, r: {"kind": "sometimes"}, note="invalid form: allowed roles see it again (400)"),
    ],
    "training_rule_set_active": [
        Rule("POST", cells(LOGIN, 404, 404, 403, RedirectTo("training_rule_list"), 404,
                           RedirectTo("training_rule_list")), kwargs=_rule_kwargs, body=lambda w, r: {"active": "0"}),
    ],
    "training_rule_delete": [
        Rule("POST", cells(LOGIN, 404, 404, 403, RedirectTo("training_rule_list"), 404,
                           RedirectTo("training_rule_list")), kwargs=_rule_kwargs),
    ],
    "api:training_rule_list": [
        Rule("GET", cells(ANON_API, 404, 404, 403, 200, 404, 200), kwargs=_campaign_kwargs),
    ],
    "api:training_rule_create": [
        Rule("POST", cells(ANON_API, 404, 404, 403, 201, 404, 201), kwargs=_campaign_kwargs,
             body=lambda w, r: {"kind": "on_close", "base_model_path": _tiny_reward_base()}),
    ],
    "api:training_rule_detail": [
        Rule("GET", cells(ANON_API, 404, 404, 403, 200, 404, 200), kwargs=_rule_kwargs),
    ],
    "api:training_rule_update": [
        Rule("POST", cells(ANON_API, 404, 404, 403, 200, 404, 200), kwargs=_rule_kwargs,
             body=lambda w, r: {"is_active": False}),
    ],
    "api:training_rule_delete": [
        Rule("POST", cells(ANON_API, 404, 404, 403, 204, 404, 204), kwargs=_rule_kwargs),
    ],
    "api:schema": [
        Rule("GET", cells(ANON_API, 200, 200, 200, 200, 200, 200), note="SERVE_PERMISSIONS: IsAuthenticated"),
    ],
    "api:docs": [
        Rule("GET", cells(ANON_API, 200, 200, 200, 200, 200, 200)),
    ],
}


# --- Fixtures ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    # Seven users per test: the default PBKDF2 hasher would make the matrix slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _model_roots(settings, tmp_path) -> None:
    # Model paths in request bodies must lie under the roots: an empty one per test, never var/.
    settings.ARBITER_MODEL_ROOTS = [tmp_path / "models"]
    settings.ARBITER_TRAINING_DIR = tmp_path / "training"


@pytest.fixture
def world(make_user, manager, annotator, outsider, researcher, campaign) -> World:
    other_manager = make_user("other_manager", Role.MANAGER)
    superuser = get_user_model().objects.create_superuser(username="root", password=PASSWORD, email="r@example.com")
    assignment = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    assert assignment is not None
    users = dict(
        anonymous=None, annotator=annotator, outsider=outsider, researcher=researcher,
        manager=manager, other_manager=other_manager, superuser=superuser,
    )
    return World(users=users, campaign=campaign, assignment=assignment)


def _client(w: World, role: str) -> APIClient:
    # A real session login (not force_authenticate): pages and the API both see the session,
    # and the API's authentication classes run as they do for a browser.
    client = APIClient()
    if w.users[role] is not None:
        client.force_login(w.users[role])
    return client


def _assert_cell(response, expect: Expect, w: World, label: str) -> None:
    got = response.status_code
    location = response.headers.get("Location", "")
    if isinstance(expect, ToLogin):
        login = resolve_url("login")
        assert got == 302 and location.startswith(f"{login}?next="), (
            f"{label}: expected 302 to {login}?next=…, got {got} {location!r}"
        )
    elif isinstance(expect, RedirectTo):
        target = reverse(expect.name, kwargs=_campaign_kwargs(w) if expect.campaign_kwarg else None)
        assert got == 302 and location == target, f"{label}: expected 302 to {target}, got {got} {location!r}"
    else:
        body = (b"<streamed>" if response.streaming else response.content[:300]).decode(errors="replace")
        assert got == expect, f"{label}: expected {expect}, got {got}: {body}"


# --- The matrix ------------------------------------------------------------------------------


def _cell_params() -> list:
    params = []
    for name, rules in RULES.items():
        for rule in rules:
            for role in ROLES:
                expect = rule.expect[role]
                marks = []
                if isinstance(expect, XFail):
                    marks = [pytest.mark.xfail(strict=True, reason=expect.reason)]
                params.append(pytest.param(name, rule, role, id=f"{name}-{rule.method}-{role}", marks=marks))
    return params


@pytest.mark.parametrize(("name", "rule", "role"), _cell_params())
def test_permission_cell(world: World, name: str, rule: Rule, role: str) -> None:
    expect = rule.expect[role]
    if isinstance(expect, XFail):
        expect = expect.expect
    url = reverse(name, kwargs=rule.kwargs(world) if rule.kwargs else None)
    client = _client(world, role)
    body = rule.body(world, role) if rule.body else None
    send = getattr(client, rule.method.lower())
    if rule.method == "GET":
        response = send(url)
    elif rule.multipart:
        response = send(url, body or {}, format="multipart")
    elif name.startswith("api:"):
        response = send(url, body or {}, format="json")
    else:
        response = send(url, body or {})  # form-encoded, as a browser posts
    label = f"{rule.method} {url} as {role}"
    _assert_cell(response, expect, world, label)
    if response.status_code == 401:
        assert response.headers.get("WWW-Authenticate") == "Token", f"{label}: 401 without WWW-Authenticate: Token"
    if rule.check and not isinstance(expect, (ToLogin, RedirectTo)) and 200 <= response.status_code < 300:
        rule.check(response, world, role)


# --- Every route has a rule --------------------------------------------------------------------


def _coverage_problems(routes: list[Route]) -> list[str]:
    problems = []
    for r in routes:
        if _is_admin(r):
            if r.name is not None and not r.name.startswith(f"{ADMIN_NAMESPACE}:"):
                problems.append(f"route {r.route!r} ({r.name}) is under {ADMIN_PREFIX} but not in the admin namespace")
            continue
        if r.name is None:
            problems.append(f"route {r.route!r} has no name; name it and add a rule to the permission matrix")
        elif r.name.startswith(f"{ADMIN_NAMESPACE}:"):
            problems.append(f"route {r.route!r} ({r.name}) is in the admin namespace but outside {ADMIN_PREFIX}")
        elif r.name not in RULES:
            problems.append(f"route {r.name} ({r.route!r}) has no rule in the permission matrix — add one")
    found = {r.name for r in routes if r.name and not _is_admin(r)}
    for stale in sorted(set(RULES) - found):
        problems.append(f"rule {stale} matches no route — remove it from the permission matrix")
    return problems


def test_every_route_has_a_rule() -> None:
    routes = list(_walk())
    assert any(_is_admin(r) for r in routes), "the admin's routes were not found by the walk"
    problems = _coverage_problems(routes)
    assert not problems, "\n".join(problems)
    # The route names found are exactly the rule table's keys, plus the admin prefix.
    assert {r.name for r in routes if not _is_admin(r)} == set(RULES)


def test_coverage_check_catches_a_new_route() -> None:
    """Guard the guard: a route added without a rule, or without a name, is reported."""
    routes = list(_walk())
    extra = [
        Route("api/v1/campaigns/<int:campaign_id>/export/", "api:campaign_export", lambda r: None),
        Route("^legacy/(?P<x>[0-9]+)/$", None, lambda r: None),
    ]
    problems = _coverage_problems(routes + extra)
    assert any("api:campaign_export" in p and "has no rule in the permission matrix — add one" in p for p in problems)
    assert any("legacy" in p and "has no name" in p for p in problems)


def test_walk_finds_nested_namespaced_and_regex_routes() -> None:
    """Guard the walker itself: it must see into includes, namespaces and regex patterns."""
    by_name = {r.name: r for r in _walk() if r.name}
    assert by_name["api:assignment_next"].route == "api/v1/campaigns/<int:campaign_id>/next/"
    assert by_name["admin:index"].route == "admin/"
    assert "(?P<app_label>" in by_name["admin:app_list"].route
    assert any(r.name is None and r.route.startswith(ADMIN_PREFIX) for r in _walk())


# --- The admin: one prefix rule ------------------------------------------------------------------

# Every admin route: anonymous and non-staff users are sent to the admin login; the superuser
# gets the page. Exceptions below. Unnamed admin routes (the `<object_id>/` redirects and the
# catch-all) cannot be reversed; they are covered by the prefix assertion above.
ADMIN_DENIED = {"anonymous", "annotator", "outsider", "researcher", "manager", "other_manager"}
ADMIN_EXCEPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    # name: (method, {role or "denied": expected})
    "admin:login": ("GET", {"denied": 200, "superuser": "302→admin:index"}),
    # admin_view sends a non-staff POST to logout to the index (which then asks for a login).
    # The superuser is logged out and sent to LOGOUT_REDIRECT_URL (the site login).
    "admin:logout": ("POST", {"denied": "302→admin:index", "superuser": "302→login"}),
    # No term/app/model/field: the autocomplete view refuses the request as malformed.
    "admin:autocomplete": ("GET", {"denied": "302→admin:login", "superuser": 403}),
    # Campaign has no get_absolute_url: no page to show.
    "admin:view_on_site": ("GET", {"superuser": 404}),
    # The audit log is written by the services only: no adding or deleting entries by hand.
    "admin:annotation_auditentry_add": ("GET", {"superuser": 403}),
    "admin:annotation_auditentry_delete": ("GET", {"superuser": 403}),
}


def _admin_object_ids(w: World) -> dict[str, Any]:
    """One real object per admin model, so the superuser's change/delete/history pages are 200."""
    annotator2 = get_user_model().objects.get(username="ann2")
    a2 = assignment_lease_next(campaign_id=w.campaign.pk, annotator=annotator2)
    judgment_submit(assignment_id=a2.pk, annotator=annotator2, answer={"outcome": "tie"})
    Token.objects.create(user=w.users["superuser"])
    item = w.assignment.item
    return {
        "auth_group": Group.objects.first().pk,
        "auth_user": w.users["annotator"].pk,
        "authtoken_tokenproxy": w.users["superuser"].pk,
        "annotation_campaign": w.campaign.pk,
        "annotation_membership": Membership.objects.filter(campaign=w.campaign).first().pk,
        "annotation_prompt": item.prompt_id,
        "annotation_response": item.item_responses.first().response_id,
        "annotation_item": item.pk,
        "annotation_assignment": w.assignment.pk,
        "annotation_judgment": Judgment.objects.first().pk,
        "annotation_invite": _invite(w).pk,
        "annotation_auditentry": AuditEntry.objects.first().pk,
        **_training_admin_ids(w),
    }


def _training_admin_ids(w: World) -> dict[str, Any]:
    from training.models import TrainingRule, TrainingRun

    run = TrainingRun.objects.create(kind="reward", campaign=w.campaign, base_model_path="/models/m", config={},
                                     created_by=w.users["manager"])  # fmt: skip
    rule = TrainingRule.objects.create(campaign=w.campaign, kind="on_close", base_model_path="/models/m",
                                       created_by=w.users["manager"])  # fmt: skip
    return {"training_trainingrun": run.pk, "training_trainingrule": rule.pk}


def _admin_url(route: Route, ids: dict[str, Any], w: World) -> str:
    short = route.name.split(":", 1)[1]
    if short == "app_list":
        return reverse(route.name, kwargs={"app_label": "annotation"})
    if short == "view_on_site":
        from django.contrib.contenttypes.models import ContentType

        ct = ContentType.objects.get_for_model(Campaign)
        return reverse(route.name, kwargs={"content_type_id": ct.pk, "object_id": w.campaign.pk})
    if short == "auth_user_password_change":
        return reverse(route.name, kwargs={"id": ids["auth_user"]})
    for model, pk in ids.items():
        if short.startswith(model + "_") and short.rsplit("_", 1)[1] in {"change", "delete", "history"}:
            return reverse(route.name, kwargs={"object_id": pk})
    return reverse(route.name)


@pytest.mark.parametrize("role", ROLES)
def test_admin_routes(world: World, role: str) -> None:
    """Request every named admin route as `role` (one test per role; admin GETs change nothing)."""
    ids = _admin_object_ids(world)
    client = _client(world, role)
    admin_login = reverse("admin:login")
    problems = []
    admin_routes = [r for r in _walk() if _is_admin(r)]
    assert admin_routes and all(r.route.startswith(ADMIN_PREFIX) for r in admin_routes)
    for route in admin_routes:
        if route.name is None:
            continue
        url = _admin_url(route, ids, world)
        method, special = ADMIN_EXCEPTIONS.get(route.name, ("GET", {}))
        key = "superuser" if role == "superuser" else "denied"
        expect = special.get(key, 200 if role == "superuser" else "302→admin:login")
        response = client.post(url) if method == "POST" else client.get(url)
        got = response.status_code
        location = response.headers.get("Location", "")
        if expect == "302→admin:login":
            ok = got == 302 and location.startswith(f"{admin_login}?next=")
        elif expect == "302→admin:index":
            ok = got == 302 and location == reverse("admin:index")
        elif expect == "302→login":
            ok = got == 302 and location == resolve_url("login")
        else:
            ok = got == expect
        if not ok:
            problems.append(f"{method} {url} ({route.name}) as {role}: expected {expect}, got {got} {location!r}")
        if route.name == "admin:logout" and role == "superuser":
            client.force_login(world.users["superuser"])  # logged out by the request: log back in
    assert not problems, "\n".join(problems)


# --- Every API view states its permission classes -------------------------------------------------


def _api_views() -> list[tuple[Route, type]]:
    views = []
    for r in _walk():
        cls = getattr(r.callback, "view_class", None) or getattr(r.callback, "cls", None)
        if cls is not None and isinstance(cls, type) and issubclass(cls, APIView):
            views.append((r, cls))
    return views


# API views that may be called without logging in (they set `permission_classes = []`).
PUBLIC_API = {"api:auth_token"}


def test_every_api_view_sets_permission_classes() -> None:
    """The default (IsAdminUser) is deny-by-default; every view must say who may call it."""
    views = _api_views()
    assert {r.name for r, _ in views} >= {n for n in RULES if n.startswith("api:")} - {"api:schema", "api:docs"}
    missing = []
    for route, cls in views:
        if cls.__module__.startswith("drf_spectacular."):
            # Third-party schema views take their permissions from SPECTACULAR_SETTINGS.SERVE_PERMISSIONS.
            continue
        if not any("permission_classes" in vars(k) for k in cls.__mro__ if k is not APIView):
            missing.append(f"{cls.__module__}.{cls.__qualname__} ({route.name}) does not set permission_classes")
        elif not cls.permission_classes and route.name not in PUBLIC_API:
            missing.append(f"{cls.__qualname__} ({route.name}) allows anyone (empty permission_classes) "
                           "but is not listed in PUBLIC_API")
    assert not missing, "\n".join(missing)


def test_matrix_summary_is_consistent() -> None:
    """Each cell is either allowed or denied in a meaningful way (no 5xx, no bare 302)."""
    for name, rules in RULES.items():
        for rule in rules:
            for role, expect in rule.expect.items():
                e = expect.expect if isinstance(expect, XFail) else expect
                assert isinstance(e, (ToLogin, RedirectTo)) or (isinstance(e, int) and 200 <= e < 500 and e != 302), (
                    name, role, e)
                if role == "anonymous" and not name.startswith("api:") and name not in {"login", "logout"}:
                    assert e == LOGIN or e == 405, f"{name}: anonymous must be sent to the login page"


# --- Beyond the table ------------------------------------------------------------------------------


def test_session_writes_need_csrf(world: World) -> None:
    """The matrix client skips CSRF checks; a real browser session must send the token."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world.users["annotator"])
    r = client.post(reverse("api:assignment_next", kwargs=_campaign_kwargs(world)), {}, format="json")
    assert r.status_code == 403 and "CSRF" in r.json()["message"], r.content
    client.force_login(world.users["manager"])
    r = client.post(reverse("campaign_status", kwargs=_campaign_kwargs(world)), {"status": "paused"})
    assert r.status_code == 403
    world.campaign.refresh_from_db()
    assert world.campaign.status == Campaign.Status.ACTIVE


def test_token_auth_gets_the_same_answers(world: World) -> None:
    """A script with a token is held to the same rules as the browser session (no CSRF needed)."""
    def as_token(role: str) -> APIClient:
        c = APIClient(enforce_csrf_checks=True)
        c.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=world.users[role]).key}")
        return c

    url = reverse("api:assignment_next", kwargs=_campaign_kwargs(world))
    assert as_token("annotator").post(url, {}, format="json").status_code == 200
    assert as_token("researcher").post(url, {}, format="json").status_code == 403
    assert as_token("other_manager").post(url, {}, format="json").status_code == 404
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert bad.post(url, {}, format="json").status_code == 401


@pytest.mark.parametrize("revoked", ["paused", "removed"])
def test_revoked_annotator_cannot_submit(world: World, revoked: str) -> None:
    membership = Membership.objects.get(campaign=world.campaign, user=world.users["annotator"])
    if revoked == "paused":
        membership.is_active = False
        membership.save(update_fields=["is_active"])
    else:
        membership.delete()
    client = _client(world, "annotator")
    url = reverse("api:judgment_submit", kwargs=_assignment_kwargs(world))
    response = client.post(url, {"outcome": "tie"}, format="json")
    assert response.status_code in (403, 404), response.content
    assert not Judgment.objects.filter(annotator=world.users["annotator"]).exists()
