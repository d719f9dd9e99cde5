"""Automated accessibility checks with axe-core (frontend devDependency) on the login, home and judging pages.

No violation of impact "serious" or "critical" is allowed, on every kind of judging page, at desktop
and phone widths, with the optional panels (shortcuts, instructions, rewrite) open.
"""

from pathlib import Path

import pytest

from annotation.models import Campaign, Role
from annotation.services.campaigns import campaign_create, campaign_set_status, membership_add
from annotation.services.imports import items_import
from tests.browser.conftest import PHONE, REPO_ROOT
from tests.browser.test_kinds import ASPECTS, LIKERT, THUMBS, rows, wait_ready
from tests.conftest import jsonl

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = REPO_ROOT / "frontend" / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = {"serious", "critical"}


def axe_violations(page) -> list[str]:
    """Run axe-core on the page as it is now; return the serious and critical violations, readably."""
    if not Path(AXE).exists():
        pytest.fail(f"{AXE} is missing: cd frontend && npm install (axe-core is a devDependency)")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    results = page.evaluate(
        """async () => {
            const r = await axe.run(document, { resultTypes: ['violations'] });
            return r.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' :: ' + (n.failureSummary || '').split('\\n').slice(0, 3).join(' ')),
            }));
        }"""
    )
    return [
        f"[{v['impact']}] {v['id']}: {v['help']}\n    " + "\n    ".join(v["nodes"])
        for v in results
        if v["impact"] in BLOCKING
    ]


def assert_accessible(page, where: str) -> None:
    problems = axe_violations(page)
    assert not problems, f"axe found serious/critical problems on {where}:\n" + "\n".join(problems)


def test_login_page(page, page_problems):
    page.goto("/login/")
    assert_accessible(page, "the login page")
    page.set_viewport_size(PHONE)
    assert_accessible(page, "the login page (phone)")
    page_problems.assert_none()


def test_home_page(page, login, campaign, annotator, page_problems):
    login(annotator)
    page.goto("/")
    assert_accessible(page, "the home page")
    page_problems.assert_none()


KINDS = {
    "pairwise": dict(kind="pairwise", responses=2, criteria=ASPECTS, allow_editing=True),
    "pairwise-plain": dict(kind="pairwise", responses=2, criteria=None, allow_editing=False),
    "ranking": dict(kind="ranking", responses=4, criteria=None, allow_editing=True),
    "rating": dict(kind="rating", responses=2, criteria=LIKERT, allow_editing=False),
    "thumbs": dict(kind="rating", responses=1, criteria=THUMBS, allow_editing=True),
}


@pytest.mark.parametrize("name", list(KINDS))
def test_judging_page(name, page, login, manager, annotator, page_problems):
    spec = KINDS[name]
    campaign = campaign_create(
        created_by=manager,
        name=f"A11y {name}",
        kind=spec["kind"],
        criteria=spec["criteria"],
        allow_editing=spec["allow_editing"],
        instructions="Judge **carefully**.\n\n- Read both\n- Decide",
        overlap=1,
    )
    items_import(campaign=campaign, lines=jsonl(rows(2, spec["responses"], long_last=True)))
    campaign_set_status(campaign=campaign, status=Campaign.Status.ACTIVE)
    membership_add(campaign=campaign, user=annotator, role=Role.ANNOTATOR)

    login(annotator)
    page.goto(f"/campaigns/{campaign.pk}/judge/")
    wait_ready(page)
    assert_accessible(page, f"the {name} judging page")

    # With the panels open, an answer given and (where offered) the rewrite open.
    page.keyboard.press("?")
    page.keyboard.press("i")
    if spec["kind"] == "pairwise":
        page.keyboard.press("a")
        page.keyboard.press("v")
    elif spec["kind"] == "ranking":
        page.keyboard.press("g")
        page.keyboard.press("j")
        page.keyboard.press("=")
    elif name == "thumbs":
        page.keyboard.press("u")
    else:
        page.keyboard.press("3")
    if spec["allow_editing"]:
        page.keyboard.press("e")
        page.keyboard.press("Escape")
    page.keyboard.press("Enter")  # a validation message, or a submit: either way the page must stay accessible
    page.wait_for_timeout(200)
    assert_accessible(page, f"the {name} judging page with panels open")

    page.set_viewport_size(PHONE)
    page.wait_for_timeout(150)
    assert_accessible(page, f"the {name} judging page at phone width")
    page_problems.assert_none()
