"""Where datasets live: a local directory or an fsspec URL (``s3://``, ``gs://``, ``file://``, …).

Every read and write of a dataset's files goes through a ``Location``, so
the same code serves a laptop's disk, a shared filesystem that every worker
of a cluster mounts, and an object store. Credentials and endpoints come
from the storage's usual environment (``AWS_ACCESS_KEY_ID``,
``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``, …), as for any
fsspec client.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from causalsynth.errors import OutputError, UnreadableDataset, one_line

# Where a dataset may be written besides a local disk: stores whose keys are paths "bucket/prefix/...".
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


@dataclass(frozen=True)
class Location:
    """A directory on some filesystem: ``fs`` is an fsspec filesystem, ``root`` its path there."""

    url: str  # as the user wrote it, for messages
    fs: Any
    root: str

    @property
    def local(self) -> bool:
        return "file" in _protocols(self.fs)

    @property
    def absolute(self) -> str:
        """The location as recorded in manifests: an absolute path, or the URL."""
        return self.root if self.local else self.url

    @property
    def path(self) -> Path:
        """The local directory (only for a local location)."""
        return Path(self.root)

    def join(self, relative: str) -> str:
        return f"{self.root.rstrip('/')}/{relative}" if relative else self.root

    def show(self, relative: str = "") -> str:
        """``relative`` as the user would name it (their URL or path)."""
        return f"{self.url.rstrip('/')}/{relative}" if relative else self.url

    def exists(self, relative: str = "") -> bool:
        return self.fs.exists(self.join(relative))

    def is_dir(self, relative: str = "") -> bool:
        return self.fs.isdir(self.join(relative))

    def is_file(self, relative: str) -> bool:
        return self.fs.isfile(self.join(relative))

    def read_bytes(self, relative: str) -> bytes:
        return self.fs.cat_file(self.join(relative))

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a file whole (one object on a store); on a local disk its directory must exist
        (``makedirs``). Any failure of the store is one ``OutputError`` naming the file."""
        try:
            self.fs.pipe_file(self.join(relative), data)
        except Exception as exc:  # noqa: BLE001 - botocore and other store errors are not OSError
            raise OutputError(f"{self.show(relative)}: cannot write: {one_line(exc)}") from None

    def makedirs(self, relative: str) -> None:
        if self.local:  # object stores have no directories
            self.fs.makedirs(self.join(relative), exist_ok=True)

    def sha256(self, relative: str) -> str:
        digest = hashlib.sha256()
        with self.fs.open(self.join(relative), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def parquet(self, relative: str, metadata: pq.FileMetaData | None = None) -> pq.ParquetFile:
        """A Parquet file, footer parsed (or given); ``OSError``/``ArrowException`` when it cannot be.

        The file stays open while the object lives: keep footers, not files.
        """
        source = self.join(relative) if self.local else self.fs.open(self.join(relative), "rb")
        return pq.ParquetFile(source, metadata=metadata)

    def within(self, relative: str) -> Location:
        return Location(self.show(relative), self.fs, self.join(relative))


def _protocols(fs) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def locate(where: str | Path) -> Location:
    """The location of a local path or an fsspec URL.

    Raises ``OutputError`` for a URL whose scheme has no filesystem installed
    (naming the package to install).
    """
    import fsspec

    where_s = str(where)
    protocol = fsspec.utils.get_protocol(where_s)
    if protocol not in OBJECT_STORES | {"file", "local", "memory"}:  # others may connect as they are built
        raise OutputError(f"{where_s}: datasets live in a local directory or an object store "
                          f"({', '.join(sorted(OBJECT_STORES))}), not {protocol}://")
    try:
        fs, root = fsspec.core.url_to_fs(where_s)
    except (ImportError, ValueError) as exc:
        raise OutputError(f"{where_s}: no filesystem for this URL ({one_line(exc)})") from None
    if "file" in _protocols(fs):
        root = str(Path(root).absolute())
    return Location(where_s, fs, root)


def unreadable(location: Location, relative: str, exc: BaseException) -> UnreadableDataset:
    return UnreadableDataset(f"{location.show(relative)}: not readable Parquet ({one_line(exc)})")

