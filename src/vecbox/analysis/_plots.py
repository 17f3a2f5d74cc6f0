"""PNG plots for the analysis CLI and benchmark (matplotlib's object API: no pyplot, no global backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vecbox._optional import require
from vecbox.analysis._metrics import roc_curve


def _figure(w: float, h: float) -> Any:
    figure = require("matplotlib.figure", "analysis", "plotting")
    return figure.Figure(figsize=(w, h), dpi=110, layout="constrained")


def _save(fig: Any, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, format="png")
    return p


def project_2d(x: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """A 2-D map of the rows: PCA (always available) or UMAP when ``umap-learn`` is installed and asked for."""
    x = np.asarray(x, dtype=np.float64)
    if method == "umap":
        try:
            import umap  # type: ignore[import-not-found]

            return np.asarray(umap.UMAP(n_components=2, random_state=seed).fit_transform(x))
        except ImportError:
            pass
    xc = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(xc[: min(len(xc), 20_000)], full_matrices=False)
    return xc @ vt[:2].T


def plot_scores(scores: np.ndarray, path: str | Path, labels: np.ndarray | None = None, threshold: float | None = None,
                title: str = "anomaly scores") -> Path:
    """Histogram of scores (split by label when given) and, with labels, the ROC curve."""
    fig = _figure(10 if labels is not None else 6, 4)
    axes = fig.subplots(1, 2 if labels is not None else 1, squeeze=False)[0]
    ax = axes[0]
    if labels is None:
        ax.hist(scores, bins=60, color="tab:blue", alpha=0.8)
    else:
        labels = np.asarray(labels).astype(bool)
        bins = np.histogram_bin_edges(scores, bins=60)
        ax.hist(scores[~labels], bins=bins, alpha=0.6, label="normal", color="tab:blue", density=True)
        ax.hist(scores[labels], bins=bins, alpha=0.6, label="anomaly", color="tab:red", density=True)
        ax.legend()
        fpr, tpr, _ = roc_curve(labels.astype(int), scores)
        axes[1].plot(fpr, tpr, color="tab:red")
        axes[1].plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
        axes[1].set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1, label="threshold_")
    ax.set(xlabel="score (higher = more anomalous)", ylabel="density" if labels is not None else "count", title=title)
    return _save(fig, path)


def plot_rocs(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "ROC") -> Path:
    """Several ROC curves ``{name: (y_true, scores)}`` on one axis, AUROC in the legend."""
    from vecbox.analysis._metrics import auroc

    fig = _figure(6, 5)
    ax = fig.subplots()
    for name, (y, s) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} ({auroc(y, s):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_map(x: np.ndarray, path: str | Path, color: Sequence[Any] | np.ndarray | None = None, *,
             method: str = "pca", title: str = "", color_label: str = "", max_points: int = 20_000,
             seed: int = 0) -> Path:
    """2-D map of the vectors coloured by a number (anomaly score) or a category (a metadata field)."""
    x = np.asarray(x)
    idx = np.arange(len(x))
    if len(x) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
    xy = project_2d(x[idx], method, seed)
    fig = _figure(7, 6)
    ax = fig.subplots()
    if color is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.6)
    else:
        c = np.asarray(color, dtype=object)[idx]
        numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in c)
        if numeric and len(set(c.tolist())) > 12:
            sc = ax.scatter(xy[:, 0], xy[:, 1], c=c.astype(float), s=4, cmap="viridis", alpha=0.8)
            fig.colorbar(sc, ax=ax, label=color_label)
        else:
            for value in sorted(set(c.tolist()), key=str):
                m = np.asarray([v == value for v in c])
                ax.scatter(xy[m, 0], xy[m, 1], s=4, alpha=0.7, label=str(value))
            ax.legend(title=color_label, markerscale=3, fontsize=8)
    ax.set(title=title or f"{method.upper()} map", xticks=[], yticks=[])
    return _save(fig, path)


def plot_capacity(dims: Sequence[int], ns: Sequence[int], coeffs: np.ndarray | None, path: str | Path) -> Path:
    """Critical n against d, with the fitted polynomial."""
    fig = _figure(6, 4.5)
    ax = fig.subplots()
    ax.plot(dims, ns, "o", label="critical n (free embeddings, k=2)")
    if coeffs is not None:
        grid = np.linspace(min(dims), max(dims), 200)
        deg = len(coeffs) - 1
        terms = " ".join(f"{c:+.3g}" + ("" if deg - i == 0 else "·d" if deg - i == 1 else f"·d^{deg - i}")
                         for i, c in enumerate(coeffs))
        ax.plot(grid, np.polyval(coeffs, grid), "-", label=f"least-squares fit: n = {terms}")
    ax.set(xlabel="embedding dimension d", ylabel="largest n with every top-2 set solvable",
           title="Capacity of single-vector retrieval")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_dimension_stats(mean: np.ndarray, std: np.ndarray, path: str | Path, outliers: Sequence[int] = ()) -> Path:
    """Per-dimension mean and standard deviation, outlier dimensions marked."""
    fig = _figure(10, 4)
    ax = fig.subplots()
    dims = np.arange(len(mean))
    ax.bar(dims, mean, width=1.0, color="tab:blue", alpha=0.7, label="mean")
    ax.plot(dims, std, color="tab:orange", lw=1, label="std")
    for j in outliers:
        ax.axvline(j, color="tab:red", lw=0.8, alpha=0.6)
    ax.set(xlabel="dimension", title="per-dimension statistics (red: outlier dimensions)")
    ax.legend()
    return _save(fig, path)


def plot_anomaly_overview(x: np.ndarray, scores: np.ndarray, path: str | Path, labels: np.ndarray | None = None,
                          method: str = "pca", seed: int = 0) -> Path:
    """One picture: score histogram (by label), ROC when labelled, and a 2-D map coloured by score."""
    x = np.asarray(x)
    fig = _figure(15 if labels is not None else 11, 4.5)
    axes = fig.subplots(1, 3 if labels is not None else 2)
    ax = axes[0]
    if labels is None:
        ax.hist(scores, bins=60, color="tab:blue", alpha=0.8)
    else:
        lab = np.asarray(labels).astype(bool)
        bins = np.histogram_bin_edges(scores, bins=60)
        ax.hist(scores[~lab], bins=bins, alpha=0.6, label="normal", color="tab:blue", density=True)
        ax.hist(scores[lab], bins=bins, alpha=0.6, label="anomaly", color="tab:red", density=True)
        ax.legend()
        fpr, tpr, _ = roc_curve(lab.astype(int), scores)
        axes[1].plot(fpr, tpr, color="tab:red")
        axes[1].plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
        axes[1].set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.set(xlabel="score (higher = more anomalous)", title="anomaly scores")
    idx = np.arange(len(x))
    if len(x) > 20_000:
        idx = np.sort(np.random.default_rng(seed).choice(len(x), 20_000, replace=False))
    xy = project_2d(x[idx], method, seed)
    order = np.argsort(scores[idx])  # most anomalous drawn last, on top
    sc = axes[-1].scatter(xy[order, 0], xy[order, 1], c=scores[idx][order], s=5, cmap="viridis")
    fig.colorbar(sc, ax=axes[-1], label="anomaly score")
    axes[-1].set(title=f"{method.upper()} map coloured by score", xticks=[], yticks=[])
    return _save(fig, path)
