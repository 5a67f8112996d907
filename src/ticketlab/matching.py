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
"""

from __future__ import annotations

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
