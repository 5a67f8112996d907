"""Does a subnetwork match the dense network? The one rule that every report, the stability sweep, the
comparison of pruning methods and the sweep use.

Frankle & Carbin 2019 call a subnetwork *matching* when, trained in isolation, it reaches the test accuracy
of the dense network in at most as many iterations. ticketlab reads that as follows:

- Which accuracy. The test accuracy at the early-stop step (the step of minimum validation loss, as Frankle
  & Carbin report it) for lottery studies, their reports, the CLI's study table and the sweep's smallest
  ticket; the final test accuracy for the stability sweep, which follows Frankle et al. 2020 ("Linear mode
  connectivity and the lottery ticket hypothesis"), who train for a fixed number of iterations and compare
  final accuracies. In both cases the ticket's accuracy is the mean over its seeds (replicates), and the
  dense side is the mean and the sample standard deviation over the dense network's seeds.
- Within a tolerance. Exact equality is not a useful test between noisy runs: a ticket matches when its
  mean is at least the dense mean minus max(the dense seeds' std, TOLERANCE), and a ticket above the dense
  mean matches. One std of the dense seeds is the spread that training noise alone gives the dense network
  (Frankle et al. 2020 count a subnetwork as matching within one standard deviation); the floor of
  TOLERANCE = 0.2 percentage points (the margin this project has cited from Frankle et al. 2020, section
  4.4) keeps a study with one dense seed, or seeds that happen to agree, from demanding an exact tie.
- In at most as many iterations. Every subnetwork is trained for the same number of steps as its dense
  network (the recipe is shared), so the accuracy it is judged by was reached within the dense network's
  budget. The verdict does not also require the ticket's early-stop step to be at most the dense one:
  that step is the minimum of a noisy validation curve sampled at evaluation points, and the reports show
  it beside the verdict for a reader who wants Frankle & Carbin's stricter reading.
- Seeds. With one dense seed there is no spread (std 0), so the tolerance is TOLERANCE itself. With two
  seeds the std is the sample std of two values, |a - b| / sqrt(2), and counts only when it is larger than
  TOLERANCE. No accuracy on either side (nothing trained to the end) gives no verdict (None), never a no.

The same rule, with the method's own runs in place of the dense network, says whether a sanity check of a
pruning method (shuffled, re-initialised, inverted) does as well as the method (report.methods).

Whether two sets of seeds *differ* (a sanity check against its method, a method against the dense network)
is a different question with its own rule below (compare_seeds: Welch's t-test at ALPHA, inconclusive below
MIN_SEEDS seeds); every report names it beside the verdict.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

TOLERANCE = 0.002  # 0.2 percentage points of accuracy: the largest shortfall that matches when seeds agree


def tolerance(dense_std: float | None) -> float:
    """How far below the dense mean a ticket may fall and still match: the dense seeds' std, at least
    TOLERANCE (one seed, or no spread: TOLERANCE)."""
    return max(dense_std or 0.0, TOLERANCE)


def lowest_matching(dense_mean: float, dense_std: float | None) -> float:
    """The lowest mean accuracy that matches a dense network of this mean and std over its seeds."""
    return dense_mean - tolerance(dense_std)


def matches(accuracy: float | None, dense_mean: float | None, dense_std: float | None) -> bool | None:
    """Whether a subnetwork of this mean accuracy (over its seeds) matches the dense network; None when
    either side has no accuracy."""
    if accuracy is None or dense_mean is None:
        return None
    return accuracy >= lowest_matching(dense_mean, dense_std)


# ---- do two sets of seeds differ? -------------------------------------------------------------------------------
#
# Matching (above) asks whether a subnetwork is within a tolerance of the dense network. A report also says
# whether two sets of seeds differ: a sanity check against its method, a method against the dense network.
# That claim is made by one test, named beside every verdict with its level and n: Welch's two-sided t-test
# (scipy.stats.ttest_ind(equal_var=False): the spreads of two methods need not be equal) at ALPHA. Below
# MIN_SEEDS seeds on either side no claim is made: two seeds give a variance estimate with one degree of
# freedom, and the verdict says "inconclusive (n = 2)".

ALPHA = 0.05  # the test's level: a difference is claimed when p < ALPHA
MIN_SEEDS = 3  # fewer seeds on either side: inconclusive, whatever the means
RULE = f"Welch's t-test, two-sided, α = {ALPHA:g}, at least {MIN_SEEDS} seeds a side"
INCONCLUSIVE, LOWER, HIGHER, SAME = "inconclusive", "lower", "higher", "no significant difference"


@dataclass(frozen=True)
class SeedComparison:
    """The verdict of one set of seeds (`sample`) against another (`reference`) by RULE."""
    outcome: str  # INCONCLUSIVE, LOWER, HIGHER (the sample's mean, p < alpha) or SAME
    n: int  # seeds of the sample
    n_reference: int
    difference: float | None  # mean(sample) - mean(reference); None when a side is empty
    p: float | None  # None when not tested (too few seeds)
    alpha: float = ALPHA

    @property
    def claims(self) -> bool:
        """A difference is claimed (LOWER or HIGHER)."""
        return self.outcome in (LOWER, HIGHER)

    def n_text(self) -> str:
        return f"n = {self.n}" if self.n == self.n_reference else f"n = {self.n} vs {self.n_reference}"

    def text(self, scale: float = 100, unit: str = " pp") -> str:
        """The verdict with its rule, level and n: 'lower (-1.50 pp, p = 0.012; Welch's t, α = 0.05, n = 3)',
        or 'inconclusive (n = 2)'."""
        if self.outcome == INCONCLUSIVE:
            return f"{INCONCLUSIVE} ({self.n_text()})"
        return (f"{self.outcome} ({scale * self.difference:+.2f}{unit}, p = {self.p:.2g}; Welch's t, "
                f"α = {self.alpha:g}, {self.n_text()})")


def compare_seeds(sample: list[float | None], reference: list[float | None],
                  alpha: float = ALPHA) -> SeedComparison:
    """Whether the seeds of `sample` differ from those of `reference` by RULE (None values are left out: a seed
    that did not train to the end has no accuracy). Both sides without any spread: p is 0 when the means differ
    and 1 when they are equal (the t statistic is then infinite or undefined; scipy returns NaN)."""
    a = [float(v) for v in sample if v is not None and not math.isnan(v)]
    b = [float(v) for v in reference if v is not None and not math.isnan(v)]
    difference = statistics.fmean(a) - statistics.fmean(b) if a and b else None
    if len(a) < MIN_SEEDS or len(b) < MIN_SEEDS:
        return SeedComparison(INCONCLUSIVE, len(a), len(b), difference, None, alpha)
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        p = 0.0 if difference != 0 else 1.0
    else:
        from scipy.stats import ttest_ind  # imported here: scipy is slow to import, and only this needs it

        p = float(ttest_ind(a, b, equal_var=False).pvalue)
    outcome = SAME if p >= alpha else (LOWER if difference < 0 else HIGHER)
    return SeedComparison(outcome, len(a), len(b), difference, p, alpha)
