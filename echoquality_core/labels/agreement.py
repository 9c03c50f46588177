"""How much do the raters agree? Cohen's kappa per pair, Fleiss' kappa and Krippendorff's alpha
for all, percent agreement, rater-vs-rater confusion matrices, per-issue-tag agreement and the
model's agreement with each rater, each statistic with a seeded bootstrap 95% CI (clips
resampled with replacement, percentile interval).

Cohen's kappa (quadratic weights on the five-point scale) is a few lines of numpy on the
rater-vs-rater table, tested equal to scikit-learn's ``cohen_kappa_score`` and statsmodels'
``cohens_kappa``: the Review tab's model-vs-raters view runs in the window's process, where
importing those held the GIL ~1 s. Fleiss' kappa comes from statsmodels' ``fleiss_kappa`` and
Krippendorff's alpha from the ``krippendorff`` package (ordinal on the five-point scale,
nominal for binary labels and tags).
A statistic that is undefined (e.g. every rater gave the same score) is NaN, shown as "–".
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from echoquality_core.labels.store import Label
from echoquality_core.decision import called_good, labelled_good

IGNORED_TAGS = ("reviewed",)  # workflow marks, not a rater's judgement
MODEL = "model"


@dataclass(frozen=True)
class Estimate:
    """A statistic with its bootstrap 95% CI (NaN when undefined)."""

    value: float
    low: float
    high: float

    def text(self, digits: int = 2, percent: bool = False) -> str:
        """'0.62 [0.41, 0.80]' (or '85% [70%, 95%]'); '–' when undefined."""
        def f(x: float) -> str:
            if not np.isfinite(x):
                return "–"
            return f"{100 * x:.0f}%" if percent else f"{x:.{digits}f}"
        return f"{f(self.value)} [{f(self.low)}, {f(self.high)}]"


@dataclass(frozen=True)
class PairAgreement:
    """Two raters on the clips both labelled."""

    a: str
    b: str
    n: int
    percent: Estimate
    kappa: Estimate
    confusion: np.ndarray  # rows: a's level, columns: b's level (levels of the report)


@dataclass(frozen=True)
class TagAgreement:
    """Do the raters agree on one issue tag (present or not) on the clips they all labelled?"""

    tag: str
    n: int
    n_tagged: int  # clips at least one rater tagged
    percent: Estimate
    alpha: Estimate


@dataclass
class AgreementReport:
    """Everything the Agreement view and ``echoquality agreement`` show."""

    raters: list[str]
    scale: str  # "binary" | "five_point"
    levels: list[float]  # the scores the confusion matrices are indexed by
    n_clips: int  # clips labelled by at least two raters
    n_complete: int  # clips labelled by every rater (Fleiss' kappa uses these)
    percent: Estimate
    fleiss: Estimate
    alpha: Estimate
    pairs: list[PairAgreement] = field(default_factory=list)
    tags: list[TagAgreement] = field(default_factory=list)
    n_boot: int = 0
    seed: int = 0

    @property
    def alpha_kind(self) -> str:
        return "ordinal" if self.scale == "five_point" else "nominal"

    def format(self) -> str:
        """The report as text (the CLI prints this; the app shows the same numbers)."""
        lines = [f"Raters: {', '.join(self.raters)} · {self.scale.replace('_', '-')} scale · "
                 f"{self.n_clips} clips labelled by 2+ raters ({self.n_complete} by all)",
                 f"95% CIs: bootstrap over clips, {self.n_boot} resamples, seed {self.seed}",
                 f"Percent agreement (all raters):  {self.percent.text(percent=True)}",
                 f"Fleiss' kappa:                   {self.fleiss.text()}",
                 f"Krippendorff's alpha ({self.alpha_kind}):    {self.alpha.text()}",
                 "", "Pairs (Cohen's kappa"
                 + (", quadratic weights)" if self.scale == "five_point" else ")")]
        for p in self.pairs:
            lines.append(f"  {p.a} vs {p.b}: n={p.n}  kappa {p.kappa.text()}  "
                         f"agreement {p.percent.text(percent=True)}")
            lines.append(f"    confusion (rows {p.a}, columns {p.b}; levels "
                         f"{', '.join(f'{v:g}' for v in self.levels)}):")
            lines.extend("      " + " ".join(f"{int(c):4d}" for c in row) for row in p.confusion)
        if self.tags:
            lines += ["", "Issue tags (present or not; Krippendorff's alpha, nominal)"]
            lines.extend(f"  {t.tag}: n={t.n}, tagged on {t.n_tagged}  alpha {t.alpha.text()}  "
                         f"agreement {t.percent.text(percent=True)}" for t in self.tags)
        return "\n".join(lines)


# --- the ratings as a matrix --------------------------------------------------------------------

def ratings_matrix(labels: Iterable[Label]) -> tuple[list[str], list[str], np.ndarray]:
    """(clips, raters, scores) with scores[rater, clip] (NaN where a rater did not label)."""
    labels = list(labels)
    raters = list(dict.fromkeys(label.rater or "" for label in labels))
    clips = list(dict.fromkeys(label.video_path for label in labels))
    matrix = np.full((len(raters), len(clips)), np.nan)
    r_index = {r: i for i, r in enumerate(raters)}
    c_index = {c: j for j, c in enumerate(clips)}
    for label in labels:
        matrix[r_index[label.rater or ""], c_index[label.video_path]] = label.quality_score
    return clips, raters, matrix


def scale_of(matrix: np.ndarray) -> tuple[str, list[float]]:
    """("binary", [0, 1]) when every score is 0 or 1, else ("five_point", [0, .25, ..., 1])."""
    values = matrix[np.isfinite(matrix)]
    if np.isin(values, (0.0, 1.0)).all():
        return "binary", [0.0, 1.0]
    return "five_point", [0.0, 0.25, 0.5, 0.75, 1.0]


def codes(matrix: np.ndarray, levels: list[float]) -> np.ndarray:
    """Scores as level indices (float, NaN kept): the nearest level of each score."""
    out = np.full(matrix.shape, np.nan)
    ok = np.isfinite(matrix)
    out[ok] = np.abs(matrix[ok][:, None] - np.asarray(levels)[None, :]).argmin(axis=1)
    return out


# --- the statistics (library calls) -------------------------------------------------------------

def _quiet(fn: Callable[[], float]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = float(fn())
        except (ValueError, ZeroDivisionError, IndexError):
            return float("nan")
    return value if np.isfinite(value) else float("nan")


def contingency(a: np.ndarray, b: np.ndarray, n_levels: int) -> np.ndarray:
    """The rater-vs-rater table of two raters' level codes: [i, j] = clips ``a`` gave level i
    and ``b`` level j."""
    cells = a.astype(int) * n_levels + b.astype(int)
    return np.bincount(cells, minlength=n_levels * n_levels).reshape(n_levels, n_levels)


def cohen_kappa(a: np.ndarray, b: np.ndarray, n_levels: int, weighted: bool) -> float:
    """Cohen's kappa of two raters' level codes (quadratic weights if ``weighted``); NaN when
    undefined."""
    return kappa_of_table(contingency(a, b, n_levels), weighted)


def kappa_of_table(table: np.ndarray, weighted: bool) -> float:
    """Cohen's kappa of a rater-vs-rater contingency table: 1 - observed / chance-expected
    disagreement (quadratic weights if ``weighted``, else 0/1); NaN when undefined (no clips, or
    no disagreement expected by chance)."""
    table = np.asarray(table, dtype=float)
    total = table.sum()
    if total == 0:
        return float("nan")
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
    i, j = np.indices(table.shape)
    weights = (i - j) ** 2 if weighted else (i != j)
    chance = float(np.sum(weights * expected))
    if chance <= 0:
        return float("nan")
    return 1.0 - float(np.sum(weights * table)) / chance


def fleiss(complete: np.ndarray, n_levels: int) -> float:
    """statsmodels' Fleiss' kappa of codes[rater, clip] with every rater on every clip."""
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    if complete.shape[0] < 2 or complete.shape[1] < 1:
        return float("nan")
    table, _ = aggregate_raters(complete.T.astype(int), n_cat=n_levels)
    return _quiet(lambda: fleiss_kappa(table, method="fleiss"))


def kripp_alpha(data: np.ndarray, ordinal: bool, n_levels: int) -> float:
    """Krippendorff's alpha of codes[rater, clip] (NaN = missing), from ``krippendorff``."""
    import krippendorff

    return _quiet(lambda: krippendorff.alpha(
        reliability_data=data, value_domain=list(range(n_levels)),
        level_of_measurement="ordinal" if ordinal else "nominal"))


def all_agree(data: np.ndarray) -> np.ndarray:
    """Per clip: 1 if every rater who labelled it gave the same level, 0 if not (NaN with
    fewer than two ratings)."""
    ok = np.isfinite(data)
    high = np.where(ok, data, -np.inf).max(axis=0)
    low = np.where(ok, data, np.inf).min(axis=0)
    return np.where(ok.sum(axis=0) >= 2, (high == low).astype(float), np.nan)


def share(flags: np.ndarray) -> float:
    """Mean of the defined flags (NaN when none)."""
    flags = flags[np.isfinite(flags)]
    return float(flags.mean()) if len(flags) else float("nan")


def bootstrap(stat: Callable[[np.ndarray], float], n_units: int, n_boot: int,
              seed: int, value: float | None = None) -> Estimate:
    """``value`` (default ``stat`` on all units), with the 2.5/97.5 percentiles of ``stat``
    on ``n_boot`` resamples of the units (numpy's seeded ``default_rng``)."""
    value = stat(np.arange(n_units)) if value is None else value
    if n_units == 0 or n_boot <= 0:
        return Estimate(value, float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    samples = np.array([stat(rng.integers(0, n_units, n_units)) for _ in range(n_boot)])
    if not np.isfinite(samples).any():
        return Estimate(value, float("nan"), float("nan"))
    low, high = np.nanpercentile(samples, [2.5, 97.5])
    return Estimate(value, float(low), float(high))


# --- reports ------------------------------------------------------------------------------------

def pair_agreement(a: str, b: str, x: np.ndarray, y: np.ndarray, levels: list[float],
                   weighted: bool, n_boot: int, seed: int) -> PairAgreement:
    """Two raters' level codes (NaN = not labelled) on the same clips."""
    both = np.isfinite(x) & np.isfinite(y)
    x, y = x[both].astype(int), y[both].astype(int)
    n = len(levels)
    same = (x == y).astype(float)
    percent = bootstrap(lambda i: share(same[i]), len(x), n_boot, seed)
    cells = x * n + y

    def resampled(i: np.ndarray) -> float:
        return kappa_of_table(np.bincount(cells[i], minlength=n * n).reshape(n, n), weighted)

    kappa = bootstrap(resampled, len(x), n_boot, seed, cohen_kappa(x, y, n, weighted))
    matrix = contingency(x, y, n)
    return PairAgreement(a, b, int(both.sum()), percent, kappa, matrix)


def tag_agreement(labels: list[Label], n_boot: int, seed: int) -> list[TagAgreement]:
    """Per issue tag: on the clips labelled by 2+ raters, do they agree it is present?"""
    clips, raters, matrix = ratings_matrix(labels)
    tags = sorted({t for label in labels for t in label.issues if t not in IGNORED_TAGS})
    r_index = {r: i for i, r in enumerate(raters)}
    c_index = {c: j for j, c in enumerate(clips)}
    multi = np.isfinite(matrix).sum(axis=0) >= 2
    out = []
    for tag in tags:
        data = np.where(np.isfinite(matrix), 0.0, np.nan)
        for label in labels:
            if tag in label.issues:
                data[r_index[label.rater or ""], c_index[label.video_path]] = 1.0
        data = data[:, multi]
        flags = all_agree(data)
        percent = bootstrap(lambda i, f=flags: share(f[i]), data.shape[1], n_boot, seed)
        alpha = bootstrap(lambda i, d=data: kripp_alpha(d[:, i], False, 2), data.shape[1],
                          n_boot, seed)
        out.append(TagAgreement(tag, int(data.shape[1]), int((np.nansum(data, 0) > 0).sum()),
                                percent, alpha))
    return out


def agreement_report(labels: Iterable[Label], *, n_boot: int = 1000, seed: int = 0,
                     tags: bool = True) -> AgreementReport:
    """Agreement of the raters of ``labels`` (each rater's label of each clip) with seeded
    bootstrap 95% CIs."""
    labels = list(labels)
    clips, raters, matrix = ratings_matrix(labels)
    scale, levels = scale_of(matrix)
    five = scale == "five_point"
    data = codes(matrix, levels)
    multi = np.isfinite(data).sum(axis=0) >= 2
    data = data[:, multi]
    complete = data[:, np.isfinite(data).all(axis=0)]
    n = len(levels)
    flags = all_agree(data)
    report = AgreementReport(
        raters, scale, levels, int(data.shape[1]), int(complete.shape[1]),
        bootstrap(lambda i: share(flags[i]), data.shape[1], n_boot, seed),
        bootstrap(lambda i: fleiss(complete[:, i], n), complete.shape[1], n_boot, seed),
        bootstrap(lambda i: kripp_alpha(data[:, i], five, n), data.shape[1], n_boot, seed),
        n_boot=n_boot, seed=seed)
    for i, j in combinations(range(len(raters)), 2):
        report.pairs.append(pair_agreement(raters[i], raters[j], data[i], data[j], levels,
                                           five, n_boot, seed))
    if tags:
        kept = {c for c, m in zip(clips, multi) if m}
        report.tags = tag_agreement([la for la in labels if la.video_path in kept],
                                    n_boot, seed)
    return report


def model_vs_raters(labels: Iterable[Label], scores: Mapping[str, float], threshold: float,
                    *, n_boot: int = 500, seed: int = 0) -> tuple[list[PairAgreement],
                                                                  list[PairAgreement]]:
    """(the model vs each rater, each pair of raters), all as good/poor calls (a rater's
    score >= 0.5, the model's score >= ``threshold``), on the clips the model scored: is the
    model within the raters' variability?"""
    labels = [la for la in labels if la.video_path in scores]
    clips, raters, matrix = ratings_matrix(labels)
    calls = np.where(np.isfinite(matrix), labelled_good(matrix).astype(float), np.nan)
    model = np.array([float(called_good(scores[c], threshold)) for c in clips])
    levels = [0.0, 1.0]
    with_model = [pair_agreement(MODEL, r, model, calls[i], levels, False, n_boot, seed)
                  for i, r in enumerate(raters)]
    between = [pair_agreement(raters[i], raters[j], calls[i], calls[j], levels, False, n_boot,
                              seed) for i, j in combinations(range(len(raters)), 2)]
    return with_model, between
