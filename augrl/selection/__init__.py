"""Selection baselines a learned selector must beat: rankers and fixed budgets.

    from augrl.selection import get_ranker, ranker_names, select

    kept = select(world, get_ranker("influence", scope="head"), budget=0.25)

See :mod:`augrl.selection.rankers` for the registry and the rankers, and
:mod:`augrl.selection.influence` for the one-step look-ahead influence ranker.
"""

from .influence import InfluenceRanker, validation_gradient
from .rankers import (RANKERS, KeepAllRanker, RandomRanker, Ranker, TeacherConfidenceRanker, TeacherStudentKLRanker,
                      ValSimilarityRanker, budget_size, divergence, get_ranker, ranker_names, ranker_parameters,
                      register_ranker, select, top_k)

__all__ = ["RANKERS", "Ranker", "register_ranker", "get_ranker", "ranker_names", "ranker_parameters", "budget_size",
           "top_k", "select", "divergence", "validation_gradient", "RandomRanker", "KeepAllRanker",
           "TeacherConfidenceRanker", "TeacherStudentKLRanker", "ValSimilarityRanker", "InfluenceRanker"]
