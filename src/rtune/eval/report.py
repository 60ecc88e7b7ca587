"""Tables people read: metrics per system, side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

HEADLINE = ("ndcg@10", "map@25", "mrr@10", "recall@10", "recall@100")


def metrics_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str] | None = None, title: str = ""):
    """A rich Table: one row per system, one column per metric."""
    from rich.table import Table

    if columns is None:
        first = next(iter(rows.values()), {})
        columns = [c for c in HEADLINE if c in first] or list(first)
    table = Table(title=title or None)
    table.add_column("system")
    for column in columns:
        table.add_column(column, justify="right")
    for name, values in rows.items():
        table.add_row(name, *(f"{values[c]:.4f}" if c in values else "-" for c in columns))
    return table


def markdown_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str]) -> str:
    """The same table as Markdown (for RESULTS.md)."""
    lines = ["| system | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{values[c]:.4f}" if c in values else "-" for c in columns) + " |")
    return "\n".join(lines)


def metrics_grid(means: Mapping[str, float], title: str = ""):
    """One system's metrics as a grid: a row per metric, a column per cut-off (fits any terminal)."""
    from rich.table import Table

    families = list(dict.fromkeys(name.split("@")[0] for name in means))
    ks = sorted({int(name.split("@")[1]) for name in means})
    table = Table(title=title or None)
    table.add_column("metric")
    for k in ks:
        table.add_column(f"@{k}", justify="right")
    for family in families:
        table.add_row(family, *(f"{means[f'{family}@{k}']:.4f}" if f"{family}@{k}" in means else "-" for k in ks))
    return table
