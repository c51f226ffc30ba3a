"""Parquet: one file per table, one row group per sampled block."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# zstd at a low level: close to snappy's write speed at a markedly smaller size
# for these columns (dictionary-encoded categories, low-entropy floats).
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1


class ParquetSink:
    """Streams each table to ``<directory>/<table>.parquet``."""

    suffix = ".parquet"

    def __init__(self) -> None:
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._paths: dict[str, Path] = {}

    def open(self, directory: Path, schemas: dict[str, pa.Schema]) -> None:
        for table, schema in schemas.items():
            path = directory / f"{table}{self.suffix}"
            self._paths[table] = path
            self._writers[table] = pq.ParquetWriter(
                path, schema, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL)

    def write(self, table: str, batch: pa.RecordBatch) -> None:
        self._writers[table].write_batch(batch)

    def close(self) -> dict[str, Path]:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        return dict(self._paths)
