"""The dependency rules in pyproject.toml ([tool.importlinter]) hold, and each one would catch a
new crossing: the check `make lint` runs as `lint-imports`, here through its Python entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
from importlinter.adapters.building import GraphBuilder
from importlinter.application.app_config import settings as importlinter_settings
from importlinter.cli import lint_imports

PYPROJECT = str(Path(__file__).resolve().parent.parent / "pyproject.toml")
CONTRACTS = ("one-way", "pure-core", "annotation-layers", "ppo-core")


class _WithExtraImport(GraphBuilder):
    """The real import graph, plus one import that is not in the code."""

    def __init__(self, importer: str, imported: str) -> None:
        self.importer, self.imported = importer, imported

    def build(self, **kwargs):
        graph = super().build(**kwargs)
        graph.add_import(importer=self.importer, imported=self.imported, line_number=1, line_contents="import probe")
        return graph


def _kept(contract: str) -> bool:
    return lint_imports(config_filename=PYPROJECT, limit_to_contracts=(contract,), no_cache=True, no_logo=True) == 0


def test_every_contract_holds_on_the_code_as_it_is():
    assert lint_imports(config_filename=PYPROJECT, no_cache=True, no_logo=True) == 0
    assert all(_kept(c) for c in CONTRACTS)


@pytest.mark.parametrize(
    "importer, imported, broken",
    [
        ("annotation.services.serving", "training.models", ["one-way"]),
        ("annotation.core.judging", "django.db", ["pure-core"]),
        # the models import Django, so the core reaching them breaks both rules
        ("annotation.core.aggregation.consensus", "annotation.models", ["pure-core", "annotation-layers"]),
        ("annotation.services.datasets", "annotation.views.datasets", ["annotation-layers"]),
        ("annotation.selectors", "annotation.services.datasets", ["annotation-layers"]),
        ("annotation.models", "annotation.http.hotpath", ["annotation-layers"]),
        ("training.ppo.core", "training.ppo.trainer", ["ppo-core"]),
    ],
)
def test_a_new_crossing_breaks_its_contract(monkeypatch, importer, imported, broken):
    """One deliberate bad import fails the check, and only the rules it crosses."""
    monkeypatch.setitem(importlinter_settings._config, "GRAPH_BUILDER", _WithExtraImport(importer, imported))
    assert [c for c in CONTRACTS if not _kept(c)] == broken
