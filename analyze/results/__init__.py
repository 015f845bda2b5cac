"""Result records (one JSON per cell), the collected table, and reading/writing it."""

from __future__ import annotations

from analyze.results.collect import SkippedRecordsWarning, collect, record_row
from analyze.results.records import (
    cell_id,
    check_results_folder,
    make_record,
    read_record,
    record_exists,
    training_composition,
    write_record,
)
from analyze.results.tables import read_table, write_table

__all__ = ['SkippedRecordsWarning', 'cell_id', 'check_results_folder', 'collect', 'make_record', 'read_record', 'read_table', 'record_exists', 'record_row', 'training_composition', 'write_record', 'write_table']
