"""Reading and writing the collected results table (CSV or Parquet), the one reader every verb uses."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from extract.errors import UserError
from extract.io import atomic_write


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a collected table from ``.csv`` or ``.parquet``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"the table {path} does not exist; run `biastransfer collect` first or fix the path.")
    if path.suffix.lower() in (".parquet", ".pq"):
        if importlib.util.find_spec("pyarrow") is None:
            raise UserError(f"reading {path} needs pyarrow, which is not installed; "
                            "pip install pyarrow or collect to CSV.")
        return pd.read_parquet(path)
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a readable CSV table ({exc.__class__.__name__}); pass the file "
                        "`biastransfer collect` wrote.") from None



def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write ``table`` to ``.csv`` or ``.parquet`` atomically (Parquet needs pyarrow)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise UserError(f"the table {path} must end in .csv or .parquet; choose one of them.")
    if suffix != ".csv" and importlib.util.find_spec("pyarrow") is None:
        raise UserError(f"writing {path} needs pyarrow, which is not installed; pip install pyarrow or write "
                        f"{path.with_suffix('.csv')} instead.")
    with atomic_write(path, hint="choose a writable path") as tmp:
        if suffix == ".csv":
            table.to_csv(tmp, index=False)
        else:
            table.to_parquet(tmp, index=False)
    return path

