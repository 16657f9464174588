"""Gallery-level error rates: the chance that a search for someone not enrolled returns anyone.

The false positive identification rate (FPIR, NIST FRTE 1:N) of a gallery of N persons
is ``1 - prod_i (1 - p_i)``, where ``p_i`` is the false match rate of person i at the
threshold applied to them (per person, from their number of enrolled faces). Treating the
persons as independent over-states FPIR when some probes resemble many people at once (the
errors then fall on fewer searches), so the figure is an upper estimate.

When every person is judged at the per-person threshold for the same ``max_fmr`` (what
identify does), ``p_i = max_fmr`` and FPIR depends on N only; at one fixed similarity
threshold for everyone it depends on how many faces each person has.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from faceledger.errors import InvalidArgument
from faceledger.models.calibration import Aggregate, Calibration

FPIR_TARGETS = (0.1, 0.01, 0.001)
"""Gallery-level targets for which an identify answer states the per-person rate needed."""


@dataclass(frozen=True, slots=True)
class GalleryRates:
    """What a search of this gallery states: per person, and for the whole gallery."""

    persons: int
    max_fmr: float
    """The per-person false match rate each person's threshold is set for."""
    fpir: float
    """Expected FPIR of a non-enrolled probe at ``max_fmr`` (an upper estimate)."""
    max_fpir: float | None = None
    """The gallery-level target ``max_fmr`` was derived from, if one was asked."""

    def max_fmr_for(self, fpir: float) -> float:
        """The per-person rate that would give this gallery the FPIR ``fpir``."""
        return max_fmr_for_fpir(self.persons, fpir)

    @property
    def max_fmr_for_fpir(self) -> dict[str, float]:
        """The per-person rate a caller would need for each of :data:`FPIR_TARGETS`."""
        return {f"{t:g}": self.max_fmr_for(t) for t in FPIR_TARGETS}


def _check(rate: float, what: str) -> None:
    if not 0.0 < rate < 1.0:
        raise InvalidArgument(f"{what} must be in (0, 1), got {rate}")


def expected_fpir(persons: int, max_fmr: float) -> float:
    """FPIR of ``persons`` each judged at a per-person false match rate ``max_fmr``."""
    _check(max_fmr, "false match rate")
    if persons < 0:
        raise InvalidArgument(f"persons must be >= 0, got {persons}")
    return -math.expm1(persons * math.log1p(-max_fmr))


def max_fmr_for_fpir(persons: int, max_fpir: float) -> float:
    """The per-person false match rate giving ``persons`` an FPIR of ``max_fpir``."""
    _check(max_fpir, "false positive identification rate")
    if persons < 1:
        return max_fpir  # an empty gallery has no false positive; any rate will do
    return -math.expm1(math.log1p(-max_fpir) / persons)


def gallery_rates(
    persons: int, *, max_fmr: float | None = None, max_fpir: float | None = None
) -> GalleryRates:
    """Per-person rate and gallery FPIR from either ``max_fmr`` or a ``max_fpir`` target.

    With ``max_fpir`` the per-person rate is derived from it (and ``max_fmr``, if also
    given, caps it: the stricter of the two holds).
    """
    if max_fmr is None and max_fpir is None:
        raise InvalidArgument("give max_fmr, max_fpir or both")
    fmr = max_fmr if max_fmr is not None else 0.5
    if max_fpir is not None:
        fmr = min(fmr, max_fmr_for_fpir(persons, max_fpir)) if persons else fmr
    return GalleryRates(persons, fmr, expected_fpir(persons, fmr), max_fpir)


def fpir_at_threshold(
    calibration: Calibration,
    face_counts: Iterable[int] | Mapping[int, int],
    threshold: float,
    *,
    aggregate: Aggregate = "max",
) -> float:
    """FPIR when every person is judged at one similarity ``threshold``.

    ``face_counts`` lists each person's number of faces, or maps a number of faces to
    the number of persons with it (cheap for large galleries).
    """
    histogram: Mapping[int, int] = (
        face_counts if isinstance(face_counts, Mapping) else Counter(face_counts)
    )
    log_pass = 0.0
    for k, n in histogram.items():
        if n:
            p = min(calibration.person_fmr(threshold, int(k), aggregate), 1 - 1e-12)
            log_pass += n * math.log1p(-p)
    return -math.expm1(log_pass)
