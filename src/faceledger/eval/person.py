"""Impostor scores of whole persons: a probe against k faces of someone else, aggregated.

An *impostor person* is ``k`` faces drawn from one calibration identity; every face of
every other identity probes it. Its score is the aggregate the search compares with the
threshold (``max`` or ``mean2``, as :mod:`faceledger.search.ranking` computes it). Rate
tables of these scores, one per k, are a calibration's per-person tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument
from faceledger.models.calibration import (
    AGGREGATES,
    PERSON_KS,
    STANDARD_FMRS,
    Aggregate,
    PersonTables,
    RateTable,
    rate_table,
)
from faceledger.types import FloatArray

DRAWS = 40
"""Impostor persons drawn per identity and k (all of them when there are fewer subsets)."""


def aggregate_rows(block: FloatArray, aggregate: Aggregate) -> FloatArray:
    """Aggregate similarities ``(..., k, m)`` over the k axis: the best, or the best two's mean."""
    k = block.shape[-2]
    if aggregate == "max" or k == 1:
        return np.asarray(block.max(axis=-2), dtype=np.float32)
    top2 = np.partition(block, k - 2, axis=-2)[..., k - 2 :, :]
    return np.asarray(top2.mean(axis=-2), dtype=np.float32)


def person_impostor_scores(
    embeddings: FloatArray,
    labels: npt.NDArray[Any],
    k: int,
    aggregate: Aggregate,
    *,
    draws: int = DRAWS,
    seed: int = 0,
    scores: FloatArray | None = None,
) -> FloatArray:
    """Aggregate scores of impostor persons of ``k`` faces against every other identity's faces.

    ``embeddings (n, d)`` float32, L2-normalised, one label per row; ``scores (n, n)``, when
    given, are the pair scores to aggregate instead of their cosine similarities (a
    normalised calibration's). Identities with fewer
    than ``k`` faces make no impostor person. Costs O(n^2 d) for the similarities plus
    O(identities * draws * k * n). Returns a flat float32 array (empty when no identity
    has ``k`` faces).
    """
    if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
        raise InvalidArgument("embeddings must be (n, d) with one label per row")
    if k < 1:
        raise InvalidArgument(f"k must be at least 1, got {k}")
    sims = embeddings @ embeddings.T if scores is None else scores
    if sims.shape != (labels.size, labels.size):
        raise InvalidArgument("scores must be (n, n) for n embeddings")
    rng = np.random.default_rng(seed)
    out: list[FloatArray] = []
    for name in np.unique(labels):
        own = np.flatnonzero(labels == name)
        if own.size < k:
            continue
        block = sims[np.ix_(own, np.flatnonzero(labels != name))]  # (n_own, m)
        if k == 1:
            out.append(block.ravel().astype(np.float32))
            continue
        subsets = np.stack(
            [rng.choice(own.size, size=k, replace=False) for _ in range(draws)]
        )  # (draws, k)
        out.append(aggregate_rows(block[subsets], aggregate).ravel())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def person_tables(
    embeddings: FloatArray,
    labels: npt.NDArray[Any],
    *,
    ks: tuple[int, ...] = PERSON_KS,
    aggregates: tuple[Aggregate, ...] = AGGREGATES,
    fmrs: tuple[float, ...] = STANDARD_FMRS,
    draws: int = DRAWS,
    seed: int = 0,
    scores: FloatArray | None = None,
) -> dict[str, PersonTables]:
    """Per-person rate tables for each aggregate, one per k that enough identities allow
    (of ``scores (n, n)`` when given, else cosine similarities).

    A k is kept when at least two identities have k faces and there are at least 1,000
    impostor scores. ``max`` tables are made monotone in k (the best of more faces never
    passes less often; sampling noise in the far tail could say otherwise).
    """
    counts = np.unique(labels, return_counts=True)[1]
    out: dict[str, PersonTables] = {}
    for aggregate in aggregates:
        kept: list[int] = []
        tables: list[RateTable] = []
        for k in ks:
            if int(np.sum(counts >= k)) < 2:
                continue
            impostors = person_impostor_scores(
                embeddings, labels, k, aggregate, draws=draws, seed=seed + k, scores=scores
            )
            if impostors.size < 1000:
                continue
            kept.append(k)
            tables.append(rate_table(impostors, fmrs=fmrs))
        if kept:
            if aggregate == "max":
                tables = _monotone_in_k(tables)
            out[aggregate] = PersonTables(tuple(kept), tuple(tables))
    return out


def _monotone_in_k(tables: list[RateTable]) -> list[RateTable]:
    """Each table's thresholds raised to at least those of the table for fewer faces."""
    out = [tables[0]]
    for t in tables[1:]:
        prev = out[-1].thresholds
        raised = tuple(max(a, b) for a, b in zip(t.thresholds, prev, strict=True))
        out.append(RateTable(t.fmrs, raised, t.extrapolated, t.impostor_scores))
    return out
