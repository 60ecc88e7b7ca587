"""Report figures as base64 PNG (matplotlib, optional: without it the report has tables only)."""

from __future__ import annotations

import base64
import io


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float = 7, height: float = 3.2, rows: int | None = None, columns: int | None = None):
    """(figure, axes): one axes, or with `rows` and `columns` a 2-d array of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if rows is None:
        return plt.subplots(figsize=(width, height))
    return plt.subplots(rows, columns, figsize=(width, height), squeeze=False)


def metric_per_system(rows: list[dict], metric: str) -> str | None:
    """Bars of `metric` per system, dev and test side by side."""
    labels = [r["label"] for r in rows if r["dev"].get(metric) is not None or r["test"].get(metric) is not None]
    if not labels:
        return None
    fig, ax = _figure(max(6, len(labels) * 0.9))
    positions = range(len(labels))
    by_label = {r["label"]: r for r in rows}
    for offset, split in ((-0.2, "dev"), (0.2, "test")):
        ax.bar([p + offset for p in positions], [by_label[label][split].get(metric, 0) for label in labels], 0.4, label=split)
    ax.set_xticks(list(positions), labels, rotation=30, ha="right")
    ax.set_ylabel(metric)
    ax.legend()
    return _png(fig)


def recall_curves(rows: list[dict], split: str = "test") -> str | None:
    """Recall@k against k, one line per system."""
    fig, ax = _figure()
    drawn = False
    for row in rows:
        points = sorted((int(k.split("@")[1]), v) for k, v in row[split].items() if k.startswith("recall@"))
        if points:
            ax.plot([k for k, _ in points], [v for _, v in points], marker="o", label=row["label"])
            drawn = True
    if not drawn:
        return None
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel(f"recall@k ({split})")
    ax.legend(fontsize=7)
    return _png(fig)


def score_distributions(reports: dict[str, dict]) -> str | None:
    """Box plots (p5-p95 whiskers) of positive, kept and dropped negative miner scores, per mining stage."""
    stats, labels = [], []
    for stage, report in reports.items():
        for name, summary in (report.get("scores") or {}).items():
            if summary:
                stats.append({"med": summary["median"], "q1": summary["p25"], "q3": summary["p75"], "whislo": summary["p5"],
                              "whishi": summary["p95"], "fliers": []})
                labels.append(f"{stage}\n{name.split(' ')[0]}")
    if not stats:
        return None
    fig, ax = _figure(max(6, len(stats) * 0.9))
    ax.bxp(stats, showfliers=False)
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7, rotation=30, ha="right")
    ax.set_ylabel("miner score")
    return _png(fig)


def training_curves(histories: dict[str, list[dict]], key: str) -> str | None:
    """`key` (a loss or a dev metric) per epoch/step, one line per training stage."""
    fig, ax = _figure()
    drawn = False
    for stage, history in histories.items():
        points = [(h.get("epoch", i), h[key]) for i, h in enumerate(history) if key in h]
        if points:
            ax.plot([p for p, _ in points], [v for _, v in points], marker="o", label=stage)
            drawn = True
    if not drawn:
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.legend(fontsize=7)
    return _png(fig)


def loss_curves(losses: dict[str, list[dict]], resumed: dict[str, int] | None = None) -> str | None:
    """Training loss against epoch, one panel per training stage (their losses differ in kind and scale).
    `losses` maps a stage to its loss history ([{"step", "epoch", "loss"}]); `resumed` a resumed stage to the
    step of its checkpoint, drawn as a dotted line."""
    import math

    stages = {stage: [h for h in history if math.isfinite(h["loss"])] for stage, history in losses.items()}
    stages = {stage: history for stage, history in stages.items() if history}
    if not stages:
        return None
    columns = min(3, len(stages))
    rows = math.ceil(len(stages) / columns)
    fig, axes = _figure(3.4 * columns, 2.6 * rows, rows, columns)
    for ax, (stage, history) in zip(axes.flat, stages.items()):
        ax.plot([h["epoch"] for h in history], [h["loss"] for h in history], marker="o" if len(history) < 30 else None,
                markersize=3)
        step = (resumed or {}).get(stage)
        before = [h for h in history if step is not None and h["step"] <= step]
        if before:
            ax.axvline(before[-1]["epoch"], linestyle=":", color="grey", label=f"resumed (step {step})")
            ax.legend(fontsize=7)
        ax.set_title(stage, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
    for ax in list(axes.flat)[len(stages):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)
