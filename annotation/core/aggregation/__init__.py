"""Aggregation of human judgments: consensus, agreement, position bias, Bradley–Terry.

Pure computation on plain dataclasses and numpy arrays; nothing here imports Django.
"""

from .agreement import (
    cohen_kappa,
    fleiss_kappa,
    fleiss_kappa_judgments,
    krippendorff_alpha,
    reliability_matrix,
)
from .bradley_terry import (
    Leaderboard,
    PairTable,
    ci_ranks,
    fit,
    leaderboard,
    pair_table,
    pair_table_from_judgments,
    to_elo,
)
from .consensus import dawid_skene, majority_vote, reliability_weighted
from .expand import ranking_to_pairs, ratings_to_pairs
from .position import PositionBias, position_bias
from .types import (
    AnnotatorReliability,
    ConsensusResult,
    EncodedJudgments,
    ItemConsensus,
    Outcome,
    PairwiseJudgment,
    encode,
    judgment_margin,
)

__all__ = [
    "AnnotatorReliability",
    "ConsensusResult",
    "EncodedJudgments",
    "ItemConsensus",
    "Leaderboard",
    "Outcome",
    "PairTable",
    "PairwiseJudgment",
    "PositionBias",
    "ci_ranks",
    "cohen_kappa",
    "dawid_skene",
    "encode",
    "fit",
    "fleiss_kappa",
    "fleiss_kappa_judgments",
    "judgment_margin",
    "krippendorff_alpha",
    "leaderboard",
    "majority_vote",
    "pair_table",
    "pair_table_from_judgments",
    "position_bias",
    "ranking_to_pairs",
    "ratings_to_pairs",
    "reliability_matrix",
    "reliability_weighted",
    "to_elo",
]
