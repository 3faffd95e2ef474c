"""The comparison's tables: one row per run, one row per configuration over its seeds, and how
they read as text and Markdown."""

from __future__ import annotations

import pandas as pd

from src.report.runs import ReadError
from src.seed_ranges import compact_seeds

DEFAULT_SORT = "final_loss"
CONFIG_KEYS = ["variant", "model", "implementation", "optimizer", "lr", "steps"]  # for display
TABLE_COLUMNS = ["run_id", *CONFIG_KEYS[:5], "seed", "steps", "final_loss", "optimum_loss", "gap",
                 "steps_to_1pct", "wall_time_s", "steps_per_s"]  # + coef/* + status
GROUPED_STATS = ("final_loss", "gap", "wall_time_s")
NUMBER_FORMATS = {"wall_time_s": ".4g", "steps_per_s": ",.0f", "lr": "g"}  # else ".6g"
STAT_SUFFIXES = ("_mean", "_std", "_min", "_max")


def coefficient_columns(df: pd.DataFrame) -> list:
    return sorted(c for c in df.columns if c.startswith("coef/"))


def run_table(runs: pd.DataFrame, sort: str = DEFAULT_SORT, descending: bool = False) -> pd.DataFrame:
    """The per-run table, sorted by any of its columns (NaN last)."""
    table = runs[TABLE_COLUMNS + coefficient_columns(runs) + ["status"]]
    if sort not in table.columns:
        raise ReadError(f"--sort {sort}: not a column; columns: {', '.join(table.columns)}")
    return table.sort_values(sort, ascending=not descending, na_position="last",
                             kind="stable").reset_index(drop=True)


def config_groups(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, runs) per configuration, seed aside (the runs' seed_group); the label is the
    variant plus the settings that tell apart the configurations sharing it."""
    groups = [group for _, group in runs.groupby("seed_group", sort=False)]
    groups.sort(key=lambda g: (str(g["variant"].iloc[0]), sorted(g["configuration"].iloc[0].items())))
    out = []
    for group in groups:
        variant, config = str(group["variant"].iloc[0]), group["configuration"].iloc[0]
        siblings = [g["configuration"].iloc[0] for g in groups
                    if str(g["variant"].iloc[0]) == variant]
        keys = sorted({k for c in siblings for k in c})
        differing = [k for k in keys if len({c.get(k) for c in siblings}) > 1]
        out.append((variant + "".join(f" {k}={config.get(k)}" for k in differing), group))
    return out


def has_seed_groups(runs: pd.DataFrame) -> bool:
    """Whether some configuration was run with several seeds."""
    return bool((runs.groupby("seed_group")["seed"].nunique(dropna=False) > 1).any())


def seed_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: n runs, their seeds, mean/std/min/max of the grouped stats."""
    rows = []
    for label, group in config_groups(runs):
        first = group.iloc[0]
        row = {"configuration": label, **{k: first[k] for k in CONFIG_KEYS},
               "n": len(group),
               "seeds": compact_seeds(group["seed"].dropna())}
        for col in GROUPED_STATS:
            for stat in ("mean", "std", "min", "max"):
                row[f"{col}_{stat}"] = group[col].agg(stat)
        rows.append(row)
    return pd.DataFrame(rows)


def compact_coefficients(row, columns: list) -> str:
    return " ".join(f"{c[5:]}={row[c]:.4g}" for c in columns if not pd.isna(row[c]))


def cell(column: str, value) -> str:
    if value is None or pd.isna(value):
        return "NaN"
    if isinstance(value, float):
        base = column.rsplit("_", 1)[0] if column.endswith(STAT_SUFFIXES) else column
        return format(value, NUMBER_FORMATS.get(base, ".6g"))
    return str(value)


def formatted(table: pd.DataFrame) -> pd.DataFrame:
    """The table as text for reading: 8-character run ids, 6 significant digits, the
    coefficients in one column (before the status)."""
    coefs = coefficient_columns(table)
    text = pd.DataFrame({col: [cell(col, v) for v in table[col]]
                         for col in table.columns if col not in coefs}, index=table.index)
    if "run_id" in text.columns:
        text = text.rename(columns={"run_id": "run"})
        text["run"] = text["run"].str[:8]
    if coefs:
        where = text.columns.get_loc("status") if "status" in text.columns else len(text.columns)
        text.insert(where, "coefficients",
                    [compact_coefficients(row, coefs) for row in table[coefs].to_dict("records")])
    return text


def numeric_columns(table: pd.DataFrame, text: pd.DataFrame) -> list[bool]:
    return [c in table.columns and pd.api.types.is_numeric_dtype(table[c]) for c in text.columns]


def to_text(table: pd.DataFrame) -> str:
    """Fixed-width text: numbers right-aligned, words left-aligned."""
    text = formatted(table)
    widths = [max([len(c), *text[c].str.len()]) for c in text.columns]
    align = [str.rjust if n else str.ljust for n in numeric_columns(table, text)]
    rows = [list(text.columns), *text.itertuples(index=False)]
    return "\n".join("  ".join(a(v, w) for a, v, w in zip(align, row, widths)).rstrip()
                     for row in rows)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (no dependency on tabulate)."""
    text = formatted(table)
    numeric = numeric_columns(table, text)
    lines = ["| " + " | ".join(text.columns) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |"
              for row in text.itertuples(index=False)]
    return "\n".join(lines) + "\n"
