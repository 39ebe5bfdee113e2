"""The ROC and threshold-selection code (edgecxr.evaluation.operating) on constructed scores, against hand counts."""
from __future__ import annotations

import numpy as np
import pytest

from edgecxr.evaluation.operating import MIN_PER_CLASS, TABLE_COLUMNS, at_threshold, auc, counts_at, operating_report, roc, sample_warnings, threshold_for, threshold_table

# 5 positives and 5 negatives; the positive at 0.4 ties a negative
SCORES = np.array([0.9, 0.8, 0.7, 0.4, 0.2, 0.6, 0.4, 0.3, 0.1, 0.05])
POSITIVE = np.array([True] * 5 + [False] * 5)


def test_roc_points_by_hand():
    r = roc(SCORES, POSITIVE)
    assert r.thresholds.tolist() == [0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05]
    assert r.sensitivity.tolist() == pytest.approx([0.2, 0.4, 0.6, 0.6, 0.8, 0.8, 1.0, 1.0, 1.0])
    assert r.specificity.tolist() == pytest.approx([1.0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.4, 0.2, 0.0])
    assert r.points()[4] == [0.4, 0.8, 0.6]


def test_roc_needs_both_kinds():
    with pytest.raises(ValueError, match="positive and negative"):
        roc([0.1, 0.2], [True, True])


def test_auc_by_hand_and_limits():
    # pairs (pos > neg): 0.9, 0.8, 0.7 beat all 5 (15); 0.4 beats 0.3, 0.1, 0.05 and ties 0.4 (3.5); 0.2 beats 2 -> 20.5 / 25
    assert auc(SCORES, POSITIVE) == pytest.approx(20.5 / 25)
    assert auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert auc([0.5] * 6, [True, False] * 3) == 0.5
    assert auc([0.5, 0.6], [False, False]) is None


def test_auc_is_the_area_under_the_roc_points():
    rng = np.random.default_rng(1)
    positive = rng.random(300) < 0.4
    scores = np.round(rng.normal(positive * 1.0, 1.0), 1)  # many ties
    r = roc(scores, positive)
    fpr = np.concatenate([[0.0], 1 - r.specificity])
    tpr = np.concatenate([[0.0], r.sensitivity])
    assert auc(scores, positive) == pytest.approx(float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)))


# (target, threshold): 0.2 and 0.5 need 1 and 3 positives; 0.9 flags all three above the highest negative (0.6) at no cost
@pytest.mark.parametrize(("target", "expected"), [(0.2, 0.7), (0.5, 0.7), (0.6, 0.7), (0.61, 0.4), (0.8, 0.4), (0.9, 0.2), (0.99, 0.2)])
def test_threshold_has_the_best_specificity_then_the_highest_sensitivity(target, expected):
    t = threshold_for(SCORES, POSITIVE, target)
    assert t == expected
    r = roc(SCORES, POSITIVE)
    meets = r.sensitivity >= target - 1e-12
    best_sp = r.specificity[meets].max()
    best_se = r.sensitivity[meets & (r.specificity == best_sp)].max()
    (i,) = np.nonzero(r.thresholds == t)[0]
    assert r.specificity[i] == best_sp and r.sensitivity[i] == best_se


def test_threshold_does_not_leave_free_positives_unflagged():
    # the case: 0.9 sensitivity is met high up, but every positive down to 0.5 is above every negative
    positive = np.array([True] * 40 + [False] * 20)
    scores = np.concatenate([np.linspace(0.99, 0.5, 39), [0.2], np.linspace(0.45, 0.0, 20)])
    t = threshold_for(scores, positive, 0.9)
    assert t == pytest.approx(0.5)
    c = counts_at(scores, positive, t)
    assert (c["tp"], c["fp"]) == (39, 0)


def test_threshold_on_random_scores_matches_the_rule_over_the_roc():
    rng = np.random.default_rng(4)
    for _ in range(50):
        positive = rng.random(80) < 0.5
        scores = np.round(rng.normal(positive * 1.2, 1.0), 1)  # ties between and within kinds
        if positive.all() or not positive.any():
            continue
        for target in (0.5, 0.8, 0.9, 0.95):
            r = roc(scores, positive)
            meets = r.sensitivity >= target - 1e-12
            best = max(zip(r.specificity[meets], r.sensitivity[meets], -r.thresholds[meets]))
            assert threshold_for(scores, positive, target) == -best[2]


def test_threshold_with_ties_and_exact_fractions():
    # 10 positives: 0.9 needs 9 flagged; the 9th and 10th highest tie at 0.3
    scores = np.array([1.0, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.3, 0.1])
    positive = np.array([True] * 10 + [False])
    assert threshold_for(scores, positive, 0.9) == 0.3
    scores[-1] = 0.35  # a negative between the 8th and 9th positive: 0.8 stops above it
    assert threshold_for(scores, positive, 0.8) == 0.4  # exactly 8 of 10, not 9 through floating error


def test_threshold_refuses_bad_targets_and_no_positives():
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            threshold_for(SCORES, POSITIVE, bad)
    with pytest.raises(ValueError, match="no positive"):
        threshold_for([0.1], [False], 0.9)


def test_counts_and_metrics_at_a_threshold():
    assert counts_at(SCORES, POSITIVE, 0.4) == {"tp": 4, "fn": 1, "tn": 3, "fp": 2}
    m = at_threshold(SCORES, POSITIVE, 0.4)
    assert (m["n_positive"], m["n_negative"], m["threshold"]) == (5, 5, 0.4)
    assert m["sensitivity"]["value"] == 0.8 and m["specificity"]["value"] == 0.6
    assert m["ppv"]["value"] == round(4 / 6, 4) and m["npv"]["value"] == 0.75 and m["flagged"]["value"] == 0.6
    for name in ("sensitivity", "specificity", "ppv", "npv", "flagged"):
        assert m[name]["low"] <= m[name]["value"] <= m[name]["high"]


def test_bootstrap_is_seeded_and_narrows_with_more_films():
    assert at_threshold(SCORES, POSITIVE, 0.4) == at_threshold(SCORES, POSITIVE, 0.4)
    big = at_threshold(np.tile(SCORES, 40), np.tile(POSITIVE, 40), 0.4)
    small = at_threshold(SCORES, POSITIVE, 0.4)
    assert big["sensitivity"]["value"] == small["sensitivity"]["value"]
    width = lambda m: m["sensitivity"]["high"] - m["sensitivity"]["low"]  # noqa: E731
    assert width(big) < width(small) / 4


def test_bootstrap_interval_covers_the_true_sensitivity_about_95_percent_of_the_time():
    """On samples drawn from a known population, the interval at a fixed threshold holds the true sensitivity ~95% of the time."""
    rng = np.random.default_rng(7)
    true_sensitivity = 0.9  # scores of positives ~ U(0, 1): threshold 0.1 flags 90% of them
    covered = 0
    trials = 400
    for _ in range(trials):
        positive = np.array([True] * 120 + [False] * 80)
        scores = np.where(positive, rng.random(200), rng.random(200) * 0.5)
        m = at_threshold(scores, positive, 0.1, replicates=1000, seed=int(rng.integers(1 << 31)))
        covered += m["sensitivity"]["low"] <= true_sensitivity <= m["sensitivity"]["high"]
    assert 0.92 <= covered / trials <= 0.98


def test_undefined_metrics_are_none():
    m = at_threshold([0.2, 0.9], [False, False], 0.5)  # no positives: no sensitivity
    assert m["sensitivity"] == {"value": None, "low": None, "high": None}
    assert m["specificity"]["value"] == 0.5 and m["npv"]["value"] == 1.0
    m = at_threshold([0.2, 0.3], [True, False], 0.95)  # nothing flagged: no PPV
    assert m["ppv"]["value"] is None and m["flagged"]["value"] == 0.0


def test_operating_report_per_source():
    sources = ["a"] * 5 + ["b"] * 5  # a: all positives, b: all negatives
    r = operating_report(SCORES, POSITIVE, 0.4, sources)
    assert r["auc"] == round(20.5 / 25, 4)
    assert set(r["per_source"]) == {"a", "b"}
    assert r["per_source"]["a"]["sensitivity"]["value"] == 0.8 and r["per_source"]["a"]["specificity"]["value"] is None
    assert r["per_source"]["b"]["specificity"]["value"] == 0.6 and r["per_source"]["b"]["auc"] is None


def test_threshold_table_rows_equal_direct_counts():
    rows = threshold_table(SCORES, POSITIVE, chosen=[0.4])
    assert len(rows) == 101  # 0.40 is on the grid already
    assert [tuple(r) for r in rows[:1]] == [TABLE_COLUMNS]
    assert [r["threshold"] for r in rows] == sorted(r["threshold"] for r in rows)
    for r in rows:
        flagged = SCORES >= r["threshold"]
        assert r["sensitivity"] == pytest.approx(np.mean(flagged[POSITIVE]))
        assert r["specificity"] == pytest.approx(np.mean(~flagged[~POSITIVE]))
        assert r["percent_flagged"] == pytest.approx(100 * np.mean(flagged))
        if flagged.any():
            assert r["ppv"] == pytest.approx(np.mean(POSITIVE[flagged]))
        else:
            assert r["ppv"] is None
    assert len(threshold_table(SCORES, POSITIVE, chosen=[0.4321])) == 102


def test_sample_warnings_say_how_many_more():
    assert sample_warnings(30, 30, 0.9, "abnormal") == []
    warnings = sample_warnings(12, 5, 0.9, "abnormal")
    assert len(warnings) == 2
    assert "only 12 positive films" in warnings[0] and f"at least {MIN_PER_CLASS}" in warnings[0] and "add 18 more" in warnings[0]
    assert "only 5 negative films" in warnings[1] and "add 25 more" in warnings[1]
    # a stricter target needs more positives: at 0.95, 3 misses allowed take 60 films
    assert "at least 60" in sample_warnings(40, 100, 0.95, "COVID")[0] and "add 20 more" in sample_warnings(40, 100, 0.95, "COVID")[0]
