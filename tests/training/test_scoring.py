"""A trained reward model scores replies, here and through transformers.pipeline."""

import pytest

pytestmark = pytest.mark.training
pytest.importorskip("trl")


def test_scorer_prefers_the_polite_reply(polite_run):
    """The scorer ranks unseen polite replies above blunt ones, in input order, in batches."""
    from training.scoring import load_scorer
    from training.tiny import polite_preferences

    result, _, _ = polite_run
    scorer = load_scorer(result.artifact_dir, batch_size=7)
    assert scorer.max_length == 64
    rows = polite_preferences(30, seed=99)
    pairs = []
    for row in rows:
        pairs += [
            (row["prompt"], row["chosen"][0]["content"]),
            (row["prompt"], row["rejected"][0]["content"]),
        ]
    scores = scorer.score(pairs)
    assert len(scores) == 60
    wins = sum(scores[2 * i] > scores[2 * i + 1] for i in range(30))
    assert wins >= 28
    assert scorer.score(pairs[:1]) == pytest.approx(
        scores[:1], abs=1e-5
    )  # batching does not change scores


def test_scorer_refuses_paths_outside_roots(polite_run, tmp_path):
    """With roots, the scorer refuses a model outside them."""
    from training.model_paths import ModelPathError
    from training.scoring import load_scorer

    with pytest.raises(ModelPathError, match="outside the model roots"):
        load_scorer(polite_run[0].artifact_dir, roots=[tmp_path])


def test_saved_model_loads_in_a_transformers_pipeline(polite_run):
    """pipeline('text-classification') loads the artifact and gives the scorer's score."""
    from transformers import pipeline

    from training.scoring import load_scorer

    path = str(polite_run[0].artifact_dir)
    scorer = load_scorer(path)
    prompt = [{"role": "user", "content": "Where is the old map?"}]
    reply = "Thank you, the teacher found the old map."
    classify = pipeline("text-classification", model=path, device="cpu")
    out = classify(scorer.text(prompt, reply), function_to_apply="none")
    assert out[0]["label"] == "reward"
    assert out[0]["score"] == pytest.approx(scorer.score([(prompt, reply)])[0], abs=1e-4)
