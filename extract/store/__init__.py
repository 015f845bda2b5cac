"""HDF5 feature stores: format, writer, reader and joins (only HDF5; the sharded driver is
:mod:`extract.sharded`, beside :mod:`extract.extraction`)."""

from __future__ import annotations

from extract.store.reader import (
    SCHEMA_VERSION,
    FeatureStore,
    StoreWriter,
    check_output_writable,
    check_same_rows,
    existing_store_matches,
    first_difference,
    identity,
    make_provenance,
    open_store,
    package_versions,
    partial_path,
    read_provenance,
)

__all__ = ['FeatureStore', 'SCHEMA_VERSION', 'StoreWriter', 'check_output_writable', 'check_same_rows', 'existing_store_matches', 'first_difference', 'identity', 'make_provenance', 'open_store', 'package_versions', 'partial_path', 'read_provenance']
