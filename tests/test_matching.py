"""The one matching rule (ticketlab.matching): its tolerance, its boundary, one and two seeds, and the reports
that use it (aggregate's verdict, the sweep's smallest ticket, the comparison's sanity checks)."""

from __future__ import annotations

import math
import statistics

from ticketlab.matching import TOLERANCE, lowest_matching, matches, tolerance
from ticketlab.report.aggregate import aggregate
from ticketlab.report.methods import summarize as summarize_methods
from ticketlab.report.methods import verdicts
from ticketlab.report.sweep import smallest_tickets, summarize


def test_the_tolerance_is_the_dense_std_and_never_below_0_2_pp():
    assert TOLERANCE == 0.002
    assert tolerance(None) == 0.002  # no spread known
    assert tolerance(0.0) == 0.002  # one seed: std 0
    assert tolerance(0.0015) == 0.002
    assert tolerance(0.002) == 0.002
    assert tolerance(0.005) == 0.005  # a wider dense spread widens the band


def test_the_boundary_matches_and_the_next_float_below_does_not():
    bar = lowest_matching(0.98, 0.0)
    assert bar == 0.98 - 0.002
    assert matches(bar, 0.98, 0.0) is True
    assert matches(math.nextafter(bar, 0.0), 0.98, 0.0) is False
    assert matches(0.979, 0.98, 0.0) is True  # 0.1 pp short
    assert matches(0.977, 0.98, 0.0) is False  # 0.3 pp short
    assert matches(0.99, 0.98, 0.0) is True  # above the dense mean


def test_no_accuracy_on_either_side_gives_no_verdict():
    assert matches(None, 0.98, 0.01) is None
    assert matches(0.98, None, None) is None


def test_two_seeds_use_their_sample_std_only_when_it_is_wider_than_the_floor():
    far = [0.97, 0.98]  # sample std |a - b| / sqrt(2) = 0.00707
    std = statistics.stdev(far)
    assert math.isclose(std, 0.01 / math.sqrt(2))
    assert tolerance(std) == std  # wider than the floor: the std itself
    assert matches(0.968, statistics.fmean(far), std) is True  # 0.7 pp short: within one std
    assert matches(0.9675, statistics.fmean(far), std) is False  # 0.75 pp short
    close = [0.9800, 0.9801]  # std 0.007 pp: the floor decides
    assert tolerance(statistics.stdev(close)) == 0.002
    assert matches(0.9785, statistics.fmean(close), statistics.stdev(close)) is True  # 0.155 pp short
    assert matches(0.9780, statistics.fmean(close), statistics.stdev(close)) is False  # 0.205 pp short


def _row(level, acc, seed, variant="ticket"):
    return {"experiment": "e", "variant": variant, "level": level, "seed": seed, "density": 0.8 ** level,
            "status": "ok", "early_stop_test_accuracy": acc, "early_stop_step": 100, "final_test_accuracy": acc}


def test_the_study_verdict_is_the_rule_on_early_stop_accuracy():
    rows = [_row(0, 0.980, 0), _row(0, 0.982, 1),  # dense mean 0.981, std 0.00141: the floor 0.2 pp decides
            _row(1, 0.9795, 0), _row(1, 0.9785, 1),  # mean 0.979: exactly 0.2 pp short
            _row(2, 0.978, 0), _row(2, 0.978, 1),  # 0.3 pp short
            _row(3, 0.99, 0), _row(3, None, 1)]  # one seed without accuracy: the mean of the other
    verdict = {e["level"]: e["matching"] for e in aggregate(rows)}
    assert verdict == {0: True, 1: matches(0.979, 0.981, statistics.stdev([0.980, 0.982])), 2: False, 3: True}
    assert verdict[1] is (0.979 >= 0.981 - 0.002)  # the float boundary as the rule computes it


def test_no_dense_level_means_no_verdict():
    assert [e["matching"] for e in aggregate([_row(1, 0.98, 0)])] == [None]


def test_the_sweeps_smallest_ticket_uses_the_rule_on_accuracy_not_error():
    def row(level, acc, seed):
        return {"model.width": 1, "seed": seed, "level": level, "density": 0.5 ** level, "status": "ok",
                "params": 10, "weights": 1000, "surviving": int(1000 * 0.5 ** level), "final_test_accuracy": acc,
                "final_train_accuracy": 1.0, "early_stop_test_accuracy": acc}
    rows = [row(0, 0.90, 0), row(0, 0.91, 1),  # dense 0.905, std 0.00707 (wider than the floor)
            row(1, 0.899, 0), row(1, 0.899, 1),  # 0.6 pp short: matches
            row(2, 0.897, 0), row(2, 0.897, 1)]  # 0.8 pp short: does not
    found = smallest_tickets(summarize(rows, "density", ["model.width"]), ["model.width"])
    assert [(t["density"], t["surviving"]) for t in found] == [(0.5, 500)]
    assert math.isclose(found[0]["bar"], 0.905 - statistics.stdev([0.90, 0.91]))


def _method_rows(check_acc: float, ticket_accs: list[float]) -> list[dict]:
    base = {"method": "snip", "requested_density": 0.1, "density": 0.1, "status": "ok", "collapsed": False}
    return ([{**base, "variant": "ticket", "early_stop_test_accuracy": a} for a in ticket_accs]
            + [{**base, "variant": "check_reinit", "early_stop_test_accuracy": check_acc}])


def test_a_sanity_check_against_its_method_is_inconclusive_below_three_seeds():
    # one run of the check (and one or three of the method): no claim, whatever the difference (the rule:
    # ticketlab.matching.compare_seeds; before, one run against one was called "do not matter" or "matter")
    for ticket in ([0.90], [0.89, 0.90, 0.91]):
        for acc in (0.899, 0.885):
            [said] = verdicts(summarize_methods(_method_rows(acc, ticket)))
            n = "n = 1" if len(ticket) == 1 else "n = 1 vs 3"
            assert said == (f"snip at 10%: re-initialised {100 * acc:.2f}% vs 90.00% ({100 * (acc - 0.9):+.2f} pp): "
                            f"inconclusive ({n}).")


def test_a_sanity_check_is_judged_by_welchs_test_with_its_rule_and_n_in_the_sentence():
    ticket = [0.90, 0.905, 0.91]
    rows = _method_rows(0.88, ticket)[:-1] + [{**_method_rows(a, [])[0]} for a in (0.88, 0.885, 0.89)]
    [said] = verdicts(summarize_methods(rows))
    # equal sample variances s^2 = 0.005^2 on both sides, n = 3: t = -0.02 / sqrt(2 s^2 / 3), Welch's df = 4
    from scipy.stats import t as student
    p = 2 * student.sf(0.02 / math.sqrt(2 * 0.005 ** 2 / 3), 4)
    assert said == (f"snip at 10%: re-initialised 88.50% vs 90.50%: the initial values matter; lower (-2.00 pp, "
                    f"p = {p:.2g}; Welch's t, α = 0.05, n = 3).")
    close = _method_rows(0.88, ticket)[:-1] + [{**_method_rows(a, [])[0]} for a in (0.90, 0.91, 0.905)]
    [same] = verdicts(summarize_methods(close))
    assert same.endswith(": no evidence that the initial values matter; no significant difference (+0.00 pp, p = 1; "
                         "Welch's t, α = 0.05, n = 3).")
