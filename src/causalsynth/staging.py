"""All-or-nothing output directories.

A local dataset is written into a hidden staging directory beside its target
and renamed into place only when complete (a rename within one filesystem is
atomic). Any failure, Ctrl-C included, removes the staging directory and any
parent directories this run created, so nothing half-written is ever left.

Object stores have no rename. There a dataset is its manifest: the parts are
written to their final keys, the manifest last, so nothing is a dataset until
it is complete; a failure removes what the job wrote.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from causalsynth.errors import OutputError, one_line
from causalsynth.store import OBJECT_STORES, Location, locate


def _check_target(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputError(f"--out {out}: directory is not empty; pass --force to replace it")


def _make_parents(directory: Path) -> list[Path]:
    """Create missing ancestors of ``directory``; return those created, deepest first."""
    missing = []
    for parent in (directory, *directory.parents):
        if parent.exists():
            break
        missing.append(parent)
    for path in reversed(missing):
        try:
            path.mkdir()
        except OSError as exc:
            _remove_dirs(missing)
            raise OutputError(f"--out: cannot create directory {path}: {exc.strerror}") from None
    return missing


def _remove_dirs(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.rmdir()
        except OSError:
            pass


@contextmanager
def deferred_interrupts() -> Iterator[Callable[[], None]]:
    """Turn Ctrl-C and SIGTERM into a stop at the caller's next check point.

    A KeyboardInterrupt raised at an arbitrary bytecode can land in a
    finaliser or a garbage-collection callback, where Python only prints it
    and carries on; a flag checked between blocks cannot be lost. A second
    signal interrupts at once. Yields the check function, which raises
    KeyboardInterrupt once a stop was requested.
    """
    requested = []

    def handler(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)

    def check() -> None:
        if requested:
            raise KeyboardInterrupt

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals are not ours to handle
        yield check
        return
    try:
        yield check
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def staged_directory(out: Path, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory that becomes ``out`` when the block exits cleanly.

    Refuses a non-empty ``out`` unless ``force``; with ``force`` the old
    contents are replaced only after the new ones are complete.
    """
    out = Path(out).absolute()
    _check_target(out, force)
    created = _make_parents(out.parent)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as exc:
        _remove_dirs(created)
        raise OutputError(f"--out {out}: cannot write in {out.parent}: {exc.strerror}") from None
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes 0700; a dataset gets the usual permissions
    try:
        yield staging
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_dirs(created)
        raise


def _publish(staging: Path, out: Path) -> None:
    if not out.exists():
        os.rename(staging, out)
        return
    if not any(out.iterdir()):
        out.rmdir()
        os.rename(staging, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rename(out, old / "previous")
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(old / "previous", out)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class Output:
    """Where a dataset's files go while it is written; ``begin()`` before writing the first one."""

    location: Location
    begin: Callable[[], None] = lambda: None


@contextmanager
def staged_location(out: str | Path, *, force: bool = False) -> Iterator[Output]:
    """Yield where a dataset's files go; they become the dataset at ``out`` when the block exits cleanly.

    ``out`` is a local path (staged, then renamed) or an object-store URL
    (``OBJECT_STORES``). A prefix that holds anything is refused unless
    ``force``. Object stores cannot swap two prefixes, so with ``force`` the
    old dataset is removed, manifest first, only when writing begins: a job
    that fails before (an unreachable cluster, a calibration error, Ctrl-C)
    leaves it as it was. A failure after removes what the job wrote.
    """
    location = locate(out)
    if location.local:
        with staged_directory(location.path, force=force) as staging:
            yield Output(locate(staging))
        return
    replace = _check_remote(location, force)
    writing = []

    def begin() -> None:
        if replace:
            _remove_dataset(location, quiet=False)
        writing.append(True)

    try:
        yield Output(location, begin)
    except BaseException:
        if writing:  # before that, nothing here is the job's: an old dataset stays as it was
            _remove_dataset(location, quiet=True)
        raise


def _check_remote(location: Location, force: bool) -> bool:
    """Refuse an object-store target that cannot take a dataset; True when an old one is to be replaced."""
    protocol = location.fs.protocol if isinstance(location.fs.protocol, str) else location.fs.protocol[0]
    if protocol not in OBJECT_STORES:
        raise OutputError(f"--out {location.url}: datasets go to a local directory or an object store "
                          f"({', '.join(sorted(OBJECT_STORES))}), not {protocol}://")
    bucket, _, prefix = location.root.partition("/")
    if not prefix.strip("/"):
        raise OutputError(f"--out {location.url}: give a prefix inside the bucket (s3://{bucket}/name): a "
                          f"dataset never takes a whole bucket")
    try:
        location.fs.info(bucket)
        location.fs.invalidate_cache()
        held = location.fs.find(location.root, maxdepth=1, withdirs=True)
    except FileNotFoundError:
        raise OutputError(f"--out {location.url}: bucket {bucket} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - botocore and other store errors are not OSError
        raise OutputError(f"--out {location.url}: cannot be reached: {one_line(exc)}") from None
    if held and not force:
        raise OutputError(f"--out {location.url}: is not empty; pass --force to replace it")
    return bool(held)


def _remove_dataset(location: Location, quiet: bool) -> None:
    """Remove everything under the prefix, its manifest first, so that no reader sees a manifest whose
    parts are going. ``quiet``: on the way out of a failure, whose error is the one to report."""
    try:
        location.fs.invalidate_cache()  # the workers' writes are not in this process's listings
        manifest = location.join("manifest.json")
        if location.fs.exists(manifest):
            location.fs.rm(manifest)
        held = location.fs.find(location.root)
        if held:
            location.fs.rm(held)
    except Exception as exc:  # noqa: BLE001 - botocore and other store errors are not OSError
        if not quiet:
            raise OutputError(f"--out {location.url}: cannot remove the old dataset: {one_line(exc)}") from None


def check_output_file(path: str | Path, option: str = "--out", suffixes: tuple[str, ...] = ()) -> Path:
    """Refuse an output file that could not be written, before the work that would fill it.

    Its directory must exist and be writable, it must not be a directory,
    and its name must end in one of ``suffixes`` (when given).
    """
    path = Path(path)
    if suffixes and path.suffix not in suffixes:
        raise OutputError(f"{option} {path}: use a {' or '.join(suffixes)} file name")
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a directory; give a file name")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: directory {parent} is not writable")
    return path


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; it becomes ``path`` only if the block succeeds."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        yield partial
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OutputError(f"--out {path}: cannot write: {exc.strerror}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
