"""Write one table three ways: CSV (for programs), Markdown (for reading) and LaTeX (for papers).

Every table target of the workflow writes all three from the same DataFrame, so the
numbers cannot drift apart. CSV keeps full precision; Markdown and LaTeX round floats to
``digits`` significant decimals and write NaN as an em dash / ``--``. No extra dependency:
the Markdown and LaTeX writers are small and deterministic (no timestamps).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .io import write_csv, write_text


def table_paths(csv: str | Path) -> tuple[Path, Path, Path]:
    """``x.csv`` -> (``x.csv``, ``x.md``, ``x.tex``)."""
    csv = Path(csv)
    return csv, csv.with_suffix(".md"), csv.with_suffix(".tex")


def write_table(df: pd.DataFrame, csv: str | Path, md: str | Path | None = None, tex: str | Path | None = None,
                caption: str = "", digits: int = 3, display: pd.DataFrame | None = None) -> None:
    """Write ``df`` as CSV, Markdown and LaTeX (paths default to ``csv`` with .md / .tex).

    ``display``: a compact view of the same numbers for the Markdown and LaTeX files (a
    wide table stays complete in the CSV).
    """
    _, md_default, tex_default = table_paths(csv)
    shown = df if display is None else display
    write_csv(df, csv)
    write_text(to_markdown(shown, caption, digits), md or md_default)
    write_text(to_latex(shown, caption, digits), tex or tex_default)


def with_interval(est, low, high, digits: int = 3) -> str:
    """``0.950 [0.900, 1.000]``; the estimate alone when the interval is NaN."""
    def f(v):
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"
    if low is None or (isinstance(low, float) and math.isnan(low)):
        return f(est)
    return f"{f(est)} [{f(low)}, {f(high)}]"


def _fmt(v: Any, digits: int, nan: str) -> str:
    if v is None:
        return nan
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return nan
        if float(v).is_integer() and 1000 <= abs(v) < 1e15:  # counts stored as floats
            return str(int(v))
        if v != 0 and abs(v) < 10 ** (-digits):
            return f"{v:.{max(1, digits - 1)}e}"
        return f"{v:.{digits}f}"
    return str(v)


def to_markdown(df: pd.DataFrame, caption: str = "", digits: int = 3) -> str:
    cols = [str(c) for c in df.columns]
    rows = [[_fmt(v, digits, "—").replace("|", "\\|") for v in r] for r in df.itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    lines = []
    if caption:
        lines += [caption, ""]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---:" if n else ":---" for n in numeric) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "—": "--"}


def tex_escape(s: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in s)


def to_latex(df: pd.DataFrame, caption: str = "", digits: int = 3) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    spec = "".join("r" if n else "l" for n in numeric)
    lines = [r"\begin{table}[ht]", r"\centering", r"\small"]
    if caption:
        lines.append(r"\caption{" + tex_escape(caption) + "}")
    lines += [r"\begin{tabular}{" + spec + "}", r"\toprule",
              " & ".join(tex_escape(str(c)) for c in df.columns) + r" \\", r"\midrule"]
    for r in df.itertuples(index=False):
        lines.append(" & ".join(tex_escape(_fmt(v, digits, "--")) for v in r) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
