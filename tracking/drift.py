"""Per-feature distances and tests of ``tfpipe monitor``: is a sample of serving data from
the distribution a reference describes (the training statistics for skew, the previous
window or batch for drift)?

Both sides are counted on the same buckets, the reference's:

- numeric features: the training statistics' standard histogram (TFDV's ten equal-width
  buckets from the training minimum to maximum, upper bound inclusive as TFDV counts), a
  bucket below the minimum, one above the maximum, and one for exact zeros (the
  statistics' ``num_zeros``, taken out of the bucket holding 0), so the zeros of a sparse
  feature are told from its small values. A feature that is zero in 97-99.8 % of rows has
  nearly all its mass in the zero bucket on both sides, so an all-zero sample is near,
  not far (TFDV's own comparator, given the sample's degenerate histogram, puts it at the
  maximum distance 1);
- categorical features: the training values (the rank histogram) and one bucket for the
  rest.

The distance is the one TFDV reports: Jensen-Shannon divergence (base 2, 0..1) for numeric
features, L-infinity of the category shares for categorical ones. The verdict needs two
things: the distance above the threshold (the smallest change that matters), and Pearson's
chi-squared test of homogeneity of the two bucket counts rejecting "same distribution" at
the run's per-test level. Buckets are merged (neighbours for numeric features, the
smallest categories for categorical ones) until every expected count is at least 5, the
condition under which the chi-squared approximation holds; a feature whose mass is all in
one merged bucket (a constant feature that stayed constant) has nothing to test. The
per-test level is the run's false-alarm rate divided by the number of tests (Bonferroni),
so on data drawn from the reference distribution at most that fraction of runs exits 1.
The test needs enough examples: below ``min_examples`` with a feature there is no verdict.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Reference", "reference", "values", "measure", "MIN_EXPECTED"]

MIN_EXPECTED = 5.0


@dataclass
class Reference:
    kind: str  # "numeric" or "categorical"
    counts: np.ndarray  # numeric [below, the histogram's buckets..., above, exactly 0]; categorical [cats..., rest]
    edges: np.ndarray | None = None  # numeric: the histogram's bucket bounds (k + 1)
    categories: list | None = None  # categorical: the bucket of each category

    @property
    def comparator(self) -> str:
        return "JENSEN_SHANNON_DIVERGENCE" if self.kind == "numeric" else "L_INFTY"

    def bucketize(self, vals) -> np.ndarray:
        """Counts of ``vals`` (already without missing values) on this reference's buckets."""
        import numpy as np
        if self.kind == "numeric":
            x = np.asarray([v for v in vals if _is_number(v)], dtype=float)
            x = x[~np.isnan(x)]
            e = self.edges
            pos = np.searchsorted(e[1:-1], x, side="left") + 1  # (low, high]; the minimum in the first
            pos[x < e[0]] = 0
            pos[x > e[-1]] = len(e)
            pos[x == 0] = len(e) + 1
            return np.bincount(pos, minlength=len(e) + 2).astype(float)
        index = {c: i for i, c in enumerate(self.categories)}
        out = np.zeros(len(self.categories) + 1)
        for v in vals:
            out[index.get(_text(v), len(self.categories))] += 1
        return out


def _is_number(v) -> bool:
    import numpy as np
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _text(v) -> str:
    return v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)


def reference(feature_stats) -> Reference | None:
    """The buckets and counts of one feature's training statistics (a TFDV
    FeatureNameStatistics); None when it has none to compare with."""
    import numpy as np
    if feature_stats is None:
        return None
    if feature_stats.HasField("num_stats"):
        hist = [h for h in feature_stats.num_stats.histograms if h.type == h.STANDARD and h.buckets]
        if not hist:
            return None
        b = hist[0].buckets
        edges = np.array([b[0].low_value] + [x.high_value for x in b], dtype=float)
        counts = np.array([0.0] + [x.sample_count for x in b] + [0.0, 0.0])
        zeros = float(feature_stats.num_stats.num_zeros)
        if zeros:  # exact zeros get a bucket of their own: a sparse feature's zeros and small values differ
            i = 1 + (0 if edges[0] == 0 else int(np.searchsorted(edges[1:-1], 0.0, side="left")))
            counts[i] = max(0.0, counts[i] - zeros)
            counts[-1] = zeros
        return Reference("numeric", counts, edges=edges)
    if feature_stats.HasField("string_stats"):
        ss = feature_stats.string_stats
        if ss.rank_histogram.buckets:
            cats = [(_text(x.label), x.sample_count) for x in ss.rank_histogram.buckets]
        else:
            cats = [(_text(x.value), x.frequency) for x in ss.top_values]
        if not cats:
            return None
        listed = sum(c for _, c in cats)
        rest = max(0.0, float(ss.common_stats.tot_num_values) - listed)
        return Reference("categorical", np.array([c for _, c in cats] + [rest], dtype=float),
                         categories=[k for k, _ in cats])
    return None


def values(table, name: str) -> tuple[list, int]:
    """The non-missing values of column ``name`` (list columns flattened) and the number of
    examples that have at least one."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if table is None or name not in table.column_names:
        return [], 0
    col = table.column(name).combine_chunks()
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        present = pc.sum(pc.greater(pc.fill_null(pc.list_value_length(col), 0), 0)).as_py() or 0
        flat = pc.list_flatten(col)
    else:
        present = len(col) - col.null_count
        flat = col
    return flat.drop_null().to_pylist(), int(present)


def _merge(ref: np.ndarray, cur: np.ndarray, order: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Buckets (taken in ``order``) merged until each merged bucket's pooled count gives
    both samples an expected count of at least MIN_EXPECTED."""
    import numpy as np
    nr, nc = ref.sum(), cur.sum()
    need = MIN_EXPECTED * (nr + nc) / min(nr, nc)
    groups, r, c = [], 0.0, 0.0
    for i in order:
        r, c = r + ref[i], c + cur[i]
        if r + c >= need:
            groups.append((r, c))
            r, c = 0.0, 0.0
    if r + c > 0:
        if groups:
            lr, lc = groups.pop()
            groups.append((lr + r, lc + c))
        else:
            groups.append((r, c))
    return np.array([g[0] for g in groups]), np.array([g[1] for g in groups])


def chi2_p_value(ref: np.ndarray, cur: np.ndarray, kind: str) -> float:
    """p-value of Pearson's chi-squared test that the two bucket counts are samples of one
    distribution (1.0 when the merged buckets leave nothing to compare)."""
    import numpy as np
    from scipy.stats import chi2
    if kind == "numeric":  # neighbours merge; the exact-zero bucket first, with the lowest values
        order = [len(ref) - 1] + list(range(len(ref) - 1))
    else:  # the smallest categories merge first, with each other
        order = sorted(range(len(ref)), key=lambda i: ref[i] + cur[i])
    r, c = _merge(ref, cur, order)
    if len(r) < 2:
        return 1.0
    table = np.vstack([r, c])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(((table - expected) ** 2 / expected).sum())
    return float(chi2.sf(stat, len(r) - 1))


def distance(ref: np.ndarray, cur: np.ndarray, kind: str) -> float:
    import numpy as np
    p, q = ref / ref.sum(), cur / cur.sum()
    if kind == "categorical":
        return float(np.max(np.abs(p - q)))
    m = (p + q) / 2

    def kl(a):
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))
    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def measure(ref: Reference, current: tuple[list, int], previous: tuple[list, int] | None = None, *,
            min_examples: int) -> dict:
    """Skew (``previous`` None: ``current`` against the training counts) or drift
    (``current`` against ``previous``, both on the training buckets) of one feature."""
    vals, n = current
    out = {"comparator": ref.comparator, "examples": n, "exceeded": False}
    if previous is not None:
        out["baseline_examples"] = previous[1]
    short = [m for m in ([n] + ([previous[1]] if previous is not None else [])) if m < min_examples]
    if short:
        return {**out, "too_few": True, "min_examples": min_examples}
    base = ref.counts if previous is None else ref.bucketize(previous[0])
    cur = ref.bucketize(vals)
    if cur.sum() == 0 or base.sum() == 0:  # only values of another type: a schema anomaly, not a distance
        return {**out, "not_comparable": "no values of the type the training statistics have"}
    return {**out, "value": distance(base, cur, ref.kind), "p_value": chi2_p_value(base, cur, ref.kind)}
