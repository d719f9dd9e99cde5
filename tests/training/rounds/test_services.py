"""The next round's services: a new campaign of generated replies, with pairs chosen at random or where the RM
is unsure; requests checked against the model roots before anything is queued."""

import json
import math
import random

import pytest
from django.urls import reverse

from annotation.errors import ApplicationError, ConflictError, ForbiddenError
from annotation.models import AuditEntry, Campaign, Item, Membership, Prompt, Response, Role
from annotation.services.imports import items_parse
from training.rounds.services import (
    Candidate,
    PromptCandidates,
    round_create,
    round_request_clean,
    select_pairs,
    win_probability,
)

RATING = [{"name": "helpfulness", "label": "Helpfulness", "scale": {"min": 1, "max": 5}}]


def replies(campaign: Campaign, texts_per_prompt: list[list[str]], labels=("ckpt-a", "ckpt-b")) -> list[PromptCandidates]:
    """Generated replies for the campaign's first prompts; reply i comes from labels[i % len(labels)]."""
    prompts = list(Prompt.objects.filter(campaign=campaign).order_by("pk"))
    return [
        PromptCandidates(
            prompt_id=prompt.pk,
            candidates=[Candidate(model_name=labels[i % len(labels)], content=t, metadata={"sample": i})
                        for i, t in enumerate(texts)],
        )
        for prompt, texts in zip(prompts, texts_per_prompt, strict=False)
    ]


class ScoresByText:
    """A reward model whose scores the test sets: a score per reply text."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.calls = 0

    def score(self, pairs):
        self.calls += 1
        return [self.scores[text] for _, text in pairs]


def item_texts(campaign: Campaign) -> list[list[str]]:
    """Return each item's reply texts in position order, items in prompt order."""
    out = []
    for item in Item.objects.filter(campaign=campaign).order_by("prompt_id", "pk"):
        out.append([ir.response.content for ir in item.item_responses.select_related("response").order_by("position")])
    return out


# --- opening a round ---------------------------------------------------------------------------------


def test_random_selection_opens_a_round_with_seeded_pairs(make_campaign, manager, annotator, researcher):
    """The round copies the schema, options and members, every prompt and reply; pairs are seeded."""
    source = make_campaign(items=3, overlap=2, annotators=[annotator], allow_ties=False, require_rationale=True,
                           instructions="Pick the kinder reply.")
    Membership.objects.create(campaign=source, user=researcher, role=Role.RESEARCHER)
    texts = [[f"p{p} reply {i}" for i in range(4)] for p in range(3)]

    result = round_create(campaign=source, generations=replies(source, texts), pairs_per_prompt=2, seed=5,
                          created_by=manager)
    new = result.campaign
    assert (result.prompts, result.responses, result.items, result.skipped_prompts) == (3, 12, 6, 0)
    assert new.parent == source and new.round_number == source.round_number + 1 == 2
    assert new.name == "Test campaign — round 2" and new.status == Campaign.Status.DRAFT
    for field in ("kind", "criteria", "overlap", "allow_ties", "require_rationale", "instructions", "lease_seconds"):
        assert getattr(new, field) == getattr(source, field), field
    assert (new.item_count, new.wanted_judgments) == (6, 12)
    members = dict(Membership.objects.filter(campaign=new).values_list("user__username", "role"))
    assert members == {"manager": "manager", "ann": "annotator", "res": "researcher"}

    source_prompts = list(Prompt.objects.filter(campaign=source).order_by("pk"))
    new_prompts = list(Prompt.objects.filter(campaign=new).order_by("pk"))
    assert [p.messages for p in new_prompts] == [p.messages for p in source_prompts]
    assert [p.metadata["source_prompt_id"] for p in new_prompts] == [p.pk for p in source_prompts]
    assert sorted(Response.objects.filter(prompt__campaign=new).values_list("model_name", flat=True)) == (
        ["ckpt-a"] * 6 + ["ckpt-b"] * 6
    )
    pairs = item_texts(new)
    assert len(pairs) == 6 and all(len(pair) == 2 and pair[0] != pair[1] for pair in pairs)
    assert all(pair[0].split()[0] == pair[1].split()[0] for pair in pairs)  # both replies answer the same prompt
    for p in range(3):  # two different pairs per prompt
        assert len({frozenset(pair) for pair in pairs if pair[0].startswith(f"p{p} ")}) == 2

    again = round_create(campaign=source, generations=replies(source, texts), pairs_per_prompt=2, seed=5,
                         created_by=manager)
    assert sorted(map(sorted, item_texts(again.campaign))) == sorted(map(sorted, pairs))
    assert again.campaign.round_number == 2  # a second try at the same round, not round 3
    entry = AuditEntry.objects.filter(campaign=source, action="campaign.round_open").first()
    assert entry.after["items"] == 6 and entry.target == f"campaign:{again.campaign.pk}"


def test_an_import_into_a_round_finds_its_generated_items_as_duplicates(make_campaign, manager):
    """A round's items carry the content hash an import computes, so importing the same
    conversation and replies into the round is refused as a duplicate, not stored twice."""
    source = make_campaign(items=1, overlap=1)
    new = round_create(campaign=source, generations=replies(source, [["first reply", "second reply"]]),
                       pairs_per_prompt=1, seed=1, created_by=manager).campaign
    messages = Prompt.objects.get(campaign=new).messages
    line = json.dumps({"id": "again", "messages": messages,
                       "responses": [{"content": " second reply"}, {"content": "first reply\n"}]})
    report = items_parse(campaign=new, lines=[line])
    assert [(n, m.split(":")[0]) for n, m in report.errors] == [(1, "duplicate of an item already in this campaign")]
    assert Item.objects.filter(campaign=new).count() == 1


def test_uncertain_selection_picks_the_pairs_nearest_even_odds(make_campaign, manager):
    """The chosen pair is the one whose Bradley–Terry win probability is closest to 0.5."""
    source = make_campaign(items=2)
    scores = {"a0": 0.0, "a1": 3.0, "a2": 3.2, "a3": 8.0, "b0": 1.0, "b1": -1.0, "b2": 5.0}
    scorer = ScoresByText(scores)
    generations = replies(source, [["a0", "a1", "a2", "a3"], ["b0", "b1", "b2"]])

    result = round_create(campaign=source, generations=generations, selection="uncertain", scorer=scorer,
                          created_by=manager)
    assert scorer.calls == 1  # every reply scored in one batch
    chosen = [frozenset(pair) for pair in item_texts(result.campaign)]
    assert chosen == [frozenset({"a1", "a2"}), frozenset({"b0", "b1"})]
    for texts, pair in zip([["a0", "a1", "a2", "a3"], ["b0", "b1", "b2"]], chosen, strict=True):
        closest = min(
            ((x, y) for i, x in enumerate(texts) for y in texts[i + 1 :]),
            key=lambda xy: abs(1 / (1 + math.exp(-(scores[xy[0]] - scores[xy[1]]))) - 0.5),
        )
        assert pair == frozenset(closest)
    rewards = dict(Response.objects.filter(prompt__campaign=result.campaign).values_list("content", "metadata"))
    assert {text: meta["reward"] for text, meta in rewards.items()} == scores

    two = round_create(campaign=source, generations=generations, selection="uncertain", scorer=scorer,
                       pairs_per_prompt=2, created_by=manager)
    assert [frozenset(p) for p in item_texts(two.campaign)] == [
        frozenset({"a1", "a2"}), frozenset({"a0", "a1"}), frozenset({"b0", "b1"}), frozenset({"b0", "b2"}),
    ]


def test_pair_helpers():
    """select_pairs orders by |sigmoid(r_i - r_j) - 0.5|; win_probability does not overflow."""
    assert win_probability(0.0, 0.0) == 0.5 and win_probability(1000.0, 0.0) == 1.0
    assert win_probability(-1000.0, 0.0) == 0.0 and win_probability(1.0, 0.0) == pytest.approx(0.7310586)
    rng = random.Random(0)
    assert len(select_pairs(3, count=5, selection="random", rng=rng)) == 3  # every pair there is
    assert select_pairs(4, count=2, selection="uncertain", rng=rng, rewards=[0, 10, 0.5, 9]) == [(0, 2), (1, 3)]


def test_ranking_and_rating_rounds(make_campaign, manager):
    """Ranking: one item with every distinct reply; rating: one item per distinct reply."""
    ranking = make_campaign(items=2, kind="ranking")
    result = round_create(campaign=ranking, generations=replies(ranking, [["x", "y", "x", "z"], ["w", "w"]]),
                          created_by=manager)
    assert [sorted(t) for t in item_texts(result.campaign)] == [["x", "y", "z"]]
    assert result.skipped_prompts == 1 and result.responses == 6  # "w" twice: nothing to rank

    rating = make_campaign(items=1, kind="rating", criteria=RATING)
    result = round_create(campaign=rating, generations=replies(rating, [["x", "y", "x"]]), created_by=manager,
                          activate=True)
    assert sorted(item_texts(result.campaign)) == [["x"], ["y"]]
    assert result.campaign.status == Campaign.Status.ACTIVE and result.campaign.criteria == rating.criteria


def test_model_names_are_not_shown_to_annotators(make_campaign, manager, annotator, client_for):
    """An annotator of the new round is served the replies, never the checkpoint that wrote them."""
    source = make_campaign(items=1, annotators=[annotator])
    result = round_create(campaign=source, generations=replies(source, [["First reply", "Second reply"]],
                                                               labels=("secret-ckpt-a", "secret-ckpt-b")),
                          created_by=manager, activate=True)
    response = client_for(annotator).post(reverse("api:assignment_next", kwargs={"campaign_id": result.campaign.pk}))
    assert response.status_code == 200, response.content
    body = response.content.decode()
    assert "First reply" in body and "Second reply" in body
    assert "secret-ckpt" not in body
    assert set(json.loads(body)["assignment"]["item"]["responses"][0]) == {"id", "content"}


def test_bad_generations_are_refused_and_nothing_is_stored(make_campaign, manager, researcher):
    """Each error names what is wrong; no campaign, prompt or response is left behind."""
    source = make_campaign(items=2)
    other = make_campaign(items=1, name="Other")
    campaigns, responses = Campaign.objects.count(), Response.objects.count()
    foreign = replies(other, [["a", "b"]])
    cases = [
        (dict(generations=foreign), "generations: prompt", "is not a prompt of campaign “Test campaign”"),
        (dict(generations=replies(source, [["a", "a"], ["b", "b"]])), "generations: every prompt's replies are identical",
         None),
        (dict(generations=replies(source, [["a", "b"]]), selection="uncertain"),
         "reward_model: 'uncertain' selection needs a reward model", None),
        (dict(generations=replies(source, [["a", "b"]]), selection="best"), "selection: must be one of random, uncertain",
         None),
        (dict(generations=replies(source, [["a", "b"]]), pairs_per_prompt=0),
         "pairs_per_prompt: must be a whole number from 1 to 20", None),
        (dict(generations=replies(source, [["a", "b"]]) * 2), "generations: a prompt appears twice", None),
        (dict(generations=replies(source, [["a", "b"]], labels=("",))), "generations: prompt",
         "the checkpoint label must be 1 to 200 characters"),
        (dict(generations=replies(source, [["a", "b"]]), name="x" * 201), "name: must be at most 200 characters", None),
    ]
    for kwargs, start, also in cases:
        with pytest.raises(ApplicationError) as info:
            round_create(campaign=source, created_by=manager, **kwargs)
        assert info.value.message.startswith(start), info.value.message
        assert also is None or also in info.value.message
    scorer = ScoresByText({"a": 1.0, "b": float("nan")})
    with pytest.raises(ApplicationError, match="a score that is not a finite number; nothing was created"):
        round_create(campaign=source, generations=replies(source, [["a", "b"]]), selection="uncertain", scorer=scorer,
                     created_by=manager)
    ranking = make_campaign(items=1, kind="ranking", name="Ranked")
    with pytest.raises(ApplicationError, match="'uncertain' chooses pairs, so it applies to pairwise campaigns"):
        round_create(campaign=ranking, generations=replies(ranking, [["a", "b"]]), selection="uncertain",
                     scorer=scorer, created_by=manager)
    Membership.objects.create(campaign=source, user=researcher, role=Role.RESEARCHER)
    with pytest.raises(ForbiddenError, match="Only the campaign's managers can open its next round."):
        round_create(campaign=source, generations=replies(source, [["a", "b"]]), created_by=researcher)
    assert (Campaign.objects.count(), Response.objects.count()) == (campaigns + 1, responses + 2)  # + "Ranked" only


# --- requests: checkpoints under the roots --------------------------------------------------------------


def test_a_forged_checkpoint_path_outside_the_roots_is_refused(make_campaign, manager, roots, model_folder, client_for):
    """Paths outside the roots, links out of them, and reward models as policies are refused, naming the field."""
    source = make_campaign(items=2)
    inside = model_folder(roots / "models" / "policy")
    outside = model_folder(roots / "elsewhere" / "policy")
    (roots / "models" / "link").symlink_to(outside)
    reward = model_folder(roots / "models" / "rm", "LlamaForSequenceClassification")
    run_model = model_folder(roots / "training" / "run-7" / "model")

    ok = round_request_clean(campaign=source, checkpoints=[str(inside), str(run_model)], k=1)
    assert ok.checkpoints == [("policy", str(inside.resolve())), ("run-7/model", str(run_model.resolve()))]
    cases = [
        ([str(outside)], "checkpoints: The model path", "is outside the model roots"),
        ([str(roots / "models" / "link")], "checkpoints: The model path", "resolves to"),
        ([str(roots / "models" / ".." / "elsewhere" / "policy")], "checkpoints: The model path", "outside"),
        (["gpt2"], "checkpoints: 'gpt2' looks like a Hugging Face Hub id", "never downloads"),
        ([str(reward)], "checkpoints:", "is a reward model (a sequence classifier); choose a policy"),
        ([str(inside), str(inside)], "checkpoints:", "is chosen twice"),
    ]
    for checkpoints, start, part in cases:
        with pytest.raises(ApplicationError) as info:
            round_request_clean(campaign=source, checkpoints=checkpoints, k=2)
        assert info.value.message.startswith(start) and part in info.value.message, info.value.message
        assert info.value.extra["fields"].keys() == {"checkpoints"}
    with pytest.raises(ApplicationError, match="reward_model: .* is not a reward model"):
        round_request_clean(campaign=source, checkpoints=[str(inside)], k=2, selection="uncertain",
                            reward_model=str(inside))
    with pytest.raises(ApplicationError, match="k: a pairwise round needs at least 2 replies per prompt"):
        round_request_clean(campaign=source, checkpoints=[str(inside)], k=1)
    with pytest.raises(ApplicationError, match="pairs_per_prompt: 2 replies per prompt make at most 1 pairs"):
        round_request_clean(campaign=source, checkpoints=[str(inside)], k=2, pairs_per_prompt=2)
    with pytest.raises(ConflictError, match="This campaign has no items yet"):
        round_request_clean(campaign=make_campaign(items=0, active=False, name="Empty"), checkpoints=[str(inside)])

    url = reverse("api:campaign_round_create", kwargs={"campaign_id": source.pk})
    response = client_for(manager).post(url, {"checkpoints": [str(outside)], "k": 2}, format="json")
    assert response.status_code == 400
    assert response.json()["message"].startswith("checkpoints: The model path")
    assert response.json()["extra"]["fields"] == {"checkpoints": [response.json()["message"][len("checkpoints: "):]]}
    assert not AuditEntry.objects.filter(action="campaign.round_queue").exists()
