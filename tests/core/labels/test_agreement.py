"""Inter-rater agreement against hand-computed values, seeded bootstrap CIs, the CLI's report."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from echoquality_core.labels.agreement import agreement_report, model_vs_raters
from echoquality_core.labels.store import Label
from echoquality_core.labels.raters import RaterStore

# Two raters, ten clips, binary. Hand-computed:
#   agreement 7/10; Cohen's kappa: pe = .6*.5 + .4*.5 = .5, (0.7 - .5) / .5 = 0.4
#   Fleiss: P = .7, p1 = 11/20, pe = .55^2 + .45^2 = .505, (0.7 - .505) / .495 = 0.393939..
#   Krippendorff nominal: Do = 6/20, De = 2*11*9/(20*19), 1 - Do/De = 84/198 = 0.424242..
A = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
B = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]


def labels_of(**ratings) -> list[Label]:
    return [Label(f"c{k}.dcm", float(score), rater, None, (), None)
            for rater, scores in ratings.items() for k, score in enumerate(scores)]


def test_binary_statistics_match_hand_computed_values():
    report = agreement_report(labels_of(ann=A, bob=B), n_boot=0)
    assert report.scale == "binary" and report.n_clips == 10 and report.n_complete == 10
    assert report.percent.value == pytest.approx(0.7)
    assert report.fleiss.value == pytest.approx(0.195 / 0.495)
    assert report.alpha.value == pytest.approx(84 / 198)
    (pair,) = report.pairs
    assert (pair.a, pair.b, pair.n) == ("ann", "bob", 10)
    assert pair.kappa.value == pytest.approx(0.4)
    assert pair.percent.value == pytest.approx(0.7)
    assert pair.confusion.tolist() == [[3, 1], [2, 4]]  # rows ann (poor, good), columns bob


def test_five_point_kappa_is_quadratic_weighted_and_alpha_ordinal():
    # codes A 0,1,2,4 / B 0,2,2,3: sum w*O = 2, sum w*E = 54/4, kappa = 1 - 2/13.5 = 23/27
    report = agreement_report(labels_of(ann=[0, .25, .5, 1], bob=[0, .5, .5, .75]), n_boot=0)
    assert report.scale == "five_point" and report.alpha_kind == "ordinal"
    assert report.pairs[0].kappa.value == pytest.approx(23 / 27)
    assert report.pairs[0].percent.value == pytest.approx(0.5)
    import krippendorff

    ordinal = krippendorff.alpha(reliability_data=[[0, 1, 2, 4], [0, 2, 2, 3]],
                                 value_domain=range(5), level_of_measurement="ordinal")
    assert report.alpha.value == pytest.approx(ordinal)
    assert report.pairs[0].confusion.shape == (5, 5)


def test_bootstrap_ci_is_seeded_and_is_the_percentile_interval():
    report = agreement_report(labels_of(ann=A, bob=B), n_boot=300, seed=7)
    again = agreement_report(labels_of(ann=A, bob=B), n_boot=300, seed=7)
    other = agreement_report(labels_of(ann=A, bob=B), n_boot=300, seed=8)
    assert report.pairs[0].kappa == again.pairs[0].kappa
    assert report.pairs[0].percent != other.pairs[0].percent
    # the same resamples by hand: clips drawn with replacement by numpy's seeded generator
    a, b = np.array(A), np.array(B)
    rng = np.random.default_rng(7)
    samples = [np.mean(a[i] == b[i]) for i in (rng.integers(0, 10, 10) for _ in range(300))]
    low, high = np.percentile(samples, [2.5, 97.5])
    assert (report.pairs[0].percent.low, report.pairs[0].percent.high) == pytest.approx((low, high))
    for est in (report.percent, report.fleiss, report.alpha, report.pairs[0].kappa):
        assert est.low <= est.value <= est.high


def test_missing_ratings_tags_and_undefined_statistics():
    labels = labels_of(ann=A, bob=B) + [Label("c0.dcm", 1.0, "cy", None, (), None)]
    labels = [Label(la.video_path, la.quality_score, la.rater, None,
                    ("off_axis",) if la.video_path in ("c0.dcm", "c1.dcm") and la.rater == "ann"
                    or la.video_path == "c0.dcm" else (), None) for la in labels]
    report = agreement_report(labels, n_boot=50)
    assert report.raters == ["ann", "bob", "cy"] and report.n_complete == 1
    assert [p.n for p in report.pairs] == [10, 1, 1]
    (tag,) = report.tags
    assert (tag.tag, tag.n, tag.n_tagged) == ("off_axis", 10, 2)
    assert tag.percent.value == pytest.approx(9 / 10)  # c1: ann tagged it, bob did not
    same = agreement_report(labels_of(ann=[1, 1], bob=[1, 1]), n_boot=20)
    assert np.isnan(same.pairs[0].kappa.value) and "–" in same.pairs[0].kappa.text()


def test_model_within_human_variability():
    labels = labels_of(ann=A, bob=B)
    scores = {f"c{k}.dcm": 0.9 if v else 0.2 for k, v in enumerate(A)}  # the model = ann
    with_model, between = model_vs_raters(labels, scores, 0.5, n_boot=0)
    assert [(p.a, p.b) for p in with_model] == [("model", "ann"), ("model", "bob")]
    assert with_model[0].kappa.value == pytest.approx(1.0)
    assert with_model[1].kappa.value == pytest.approx(between[0].kappa.value) == pytest.approx(.4)


def test_cli_prints_the_same_numbers_as_the_library(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("video_path,quality_score\n")
    store = RaterStore(tmp_path / "labels_by_rater.csv")
    for label in labels_of(ann=A, bob=B):
        store.set(label.video_path, label.rater, label.quality_score,
                  issues=("dropout",) if label.video_path == "c3.dcm" else (), save=False)
    store.save()
    expected = agreement_report(store.labels(), n_boot=100, seed=3).format()
    code = "from echoquality_core.cli.main import main; raise SystemExit(main())"
    done = subprocess.run([sys.executable, "-c", code, "agreement", "--csv", str(csv_path),
                           "--n-boot", "100", "--seed", "3"], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected.strip()
    assert "kappa 0.40 [" in done.stdout and "dropout" in done.stdout
    bad = subprocess.run([sys.executable, "-c", code, "agreement", "--csv",
                          str(tmp_path / "nope.csv")], capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "labels CSV not found" in bad.stderr


def kappa_cases():
    """(codes a, codes b, levels): random, almost all agreeing, one level only, empty."""
    rng = np.random.default_rng(5)
    out = [(rng.integers(0, n, m), rng.integers(0, n, m), n)
           for n, m in ((2, 7), (2, 60), (5, 12), (5, 200))]
    a = rng.integers(0, 5, 40)
    b = a.copy()
    b[:3] = (b[:3] + 1) % 5
    out += [(a, b, 5), (np.ones(6, int), np.ones(6, int), 2), (np.zeros(5, int), b[:5] % 2, 2)]
    return out


@pytest.mark.parametrize("a, b, n", kappa_cases())
@pytest.mark.parametrize("weighted", [False, True])
def test_kappa_equals_scikit_learn_and_statsmodels(a, b, n, weighted):
    """The numpy kappa the window uses (no scikit-learn there) against the reference libraries,
    used here only as the reference."""
    import warnings

    from sklearn.metrics import cohen_kappa_score, confusion_matrix
    from statsmodels.stats.inter_rater import cohens_kappa

    from echoquality_core.labels.agreement import cohen_kappa, contingency, kappa_of_table

    table = contingency(a, b, n)
    np.testing.assert_array_equal(table, confusion_matrix(a, b, labels=list(range(n))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = cohen_kappa_score(a, b, labels=list(range(n)),
                                      weights="quadratic" if weighted else None)
        table_reference = cohens_kappa(table, wt="quadratic" if weighted else None,
                                       return_results=False)
    ours = cohen_kappa(a, b, n, weighted)
    if not np.isfinite(reference):
        assert np.isnan(ours) and np.isnan(kappa_of_table(table, weighted))
        return
    assert ours == pytest.approx(reference, abs=1e-12)
    assert kappa_of_table(table, weighted) == pytest.approx(table_reference, abs=1e-12)


def test_model_vs_raters_imports_no_scikit_learn_statsmodels_or_scipy():
    """The Review tab's model-vs-raters view runs in the window's process (in a thread, where
    such an import still holds the GIL ~1 s): in a fresh interpreter, none of them loads."""
    code = ("import sys; from echoquality_core.labels.agreement import model_vs_raters; "
            "from echoquality_core.labels.store import Label; "
            f"a, b = {A}, {B}; "
            "labels = [Label(f'c{k}.dcm', float(s), r, None, (), None) "
            "for r, scores in (('ann', a), ('bob', b)) for k, s in enumerate(scores)]; "
            "scores = {f'c{k}.dcm': 0.9 if v else 0.2 for k, v in enumerate(a)}; "
            "m, h = model_vs_raters(labels, scores, 0.5, n_boot=200); "
            "print(round(h[0].kappa.value, 6), "
            "sorted({'sklearn', 'statsmodels', 'scipy'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.split() == ["0.4", "[]"], out.stdout + out.stderr
