"""All-or-nothing output directories.

A local dataset is written into a hidden staging directory beside its target
and renamed into place only when complete (a rename within one filesystem is
atomic). Any failure, Ctrl-C included, removes the staging directory and any
parent directories this run created, so nothing half-written is ever left.

``--force`` replaces only what causalsynth wrote (a directory its ``owned``
test recognises: a dataset's manifest, an export's own index) or an empty
directory, never a user's files, the working directory or a root. A writer
holds an exclusive claim on its target (a lock beside it) from before its
first block to its publish, so a second writer fails at once rather than
replacing the first; the claim also tells whether hidden leftovers beside the
target are a dead run's, which are then restored or removed, and said so.

Object stores have no rename. There a dataset is its manifest: the parts are
written to their final keys, the manifest last, so nothing is a dataset until
it is complete; a failure removes what the job wrote.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from causalsynth.dataset.location import OBJECT_STORES, Location, locate
from causalsynth.errors import OutputError, one_line

log = logging.getLogger(__name__)


def json_marker(name: str, key: str, value: object = None) -> Callable[[Path], bool]:
    """An ``owned`` test: the directory holds file ``name``, a JSON object with ``key`` (equal to ``value``)."""
    def owned(directory: Path) -> bool:
        try:
            data = json.loads((directory / name).read_bytes())
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and key in data and (value is None or data[key] == value)

    return owned


def _check_target(out: Path, force: bool, owned: Callable[[Path], bool], what: str) -> None:
    resolved = out.resolve()
    refused = {Path.cwd().resolve(): "the working directory", Path.home().resolve(): "your home directory"}
    if resolved.parent == resolved or resolved in refused:
        raise OutputError(f"--out {out}: is {refused.get(resolved, 'a root directory')}; give a directory of "
                          f"its own (an empty --out means the working directory)")
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise OutputError(f"--out {out}: directory is not empty; pass --force to replace it")
        if not owned(out):
            raise OutputError(f"--out {out}: holds files that are not {what}; --force replaces only {what} or "
                              f"an empty directory")


@contextmanager
def _claim(out: Path) -> Iterator[None]:
    """Hold the exclusive claim on ``out`` (a lock file beside it) for the block; refuse a held one."""
    lock = out.parent / f".{out.name}.lock"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"--out {out}: cannot write in {out.parent}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f"--out {out}: another causalsynth run is writing it now; wait for it to end, "
                              f"or choose another --out") from None
        try:  # a run that ended between our open and our lock unlinked that file: claim the new one
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def _clear_leftovers(out: Path) -> None:
    """Restore or remove what dead runs left beside ``out`` (under its claim, none is a live run's)."""
    stale = sorted(out.parent.glob(f".{out.name}.*.partial")) + sorted(out.parent.glob(f".{out.name}.*.old"))
    for path in stale:
        previous = path / "previous"
        if path.suffix == ".old" and previous.is_dir() and not out.exists():
            os.rename(previous, out)
            log.warning("restored %s, which a run interrupted while replacing it had left in %s", out, path.name)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        shutil.rmtree(path, ignore_errors=True)
        log.warning("removed %s beside %s, left by an interrupted run (%.1f MB)", path.name, out, size / 1e6)


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
def staged_directory(out: str | Path, *, force: bool = False, owned: Callable[[Path], bool],
                     what: str) -> Iterator[Path]:
    """Yield an empty staging directory that becomes ``out`` when the block exits cleanly.

    Refuses an empty, root-like or non-empty ``out`` unless ``force``, and with
    ``force`` one that ``owned`` does not recognise as ``what`` (a causalsynth
    dataset, …); the old contents are replaced only after the new ones are
    complete. The claim on ``out`` is held throughout.
    """
    if "://" in str(out):
        raise OutputError(f"--out {out}: {what} is written to a local directory; an object-store URL takes a "
                          f"dataset only")
    out = Path(out).absolute()
    _check_target(out, force, owned, what)
    created = _make_parents(out.parent)
    try:
        with _claim(out):
            _clear_leftovers(out)
            _check_target(out, force, owned, what)  # again: what a dead run left may have been restored
            replacing = out.is_dir() and any(out.iterdir())
            try:
                staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
            except OSError as exc:
                raise OutputError(f"--out {out}: cannot write in {out.parent}: {exc.strerror}") from None
            umask = os.umask(0)
            os.umask(umask)
            staging.chmod(0o777 & ~umask)  # mkdtemp makes 0700; a dataset gets the usual permissions
            try:
                yield staging
                _publish(staging, out, replacing, owned, what)
            except OSError as exc:  # a full disk, a quota: what was written goes, and the reason is one line
                shutil.rmtree(staging, ignore_errors=True)
                raise OutputError(f"--out {out}: cannot write: {exc.strerror or one_line(exc)}") from None
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    except BaseException:
        _remove_dirs(created)
        raise


def _publish(staging: Path, out: Path, replacing: bool, owned: Callable[[Path], bool], what: str) -> None:
    """Rename ``staging`` to ``out``; what appeared at ``out`` meanwhile (not through a causalsynth run,
    which the claim keeps out) is never replaced unless it is what ``force`` was given for."""
    if out.is_dir() and any(out.iterdir()) and not (replacing and owned(out)):
        raise OutputError(f"--out {out}: files appeared there while this run was writing; they are left as "
                          f"they are, and nothing was written")
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


# What causalsynth writes into a dataset's directory besides its manifest and tables: the exports and the
# evaluation that go there by default.
DERIVED = ("ml", "rcaeval", "re2", "rcabench", "otlp", "evaluation.json")


def _dataset_alone(directory: Path) -> bool:
    """An ``owned`` test: ``directory`` holds a causalsynth dataset and nothing else but ``DERIVED``, so
    replacing it removes no file of the user's."""
    try:
        manifest = json.loads((directory / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or manifest.get("format") != "causalsynth-dataset":
        return False
    tables = manifest.get("tables") if isinstance(manifest.get("tables"), dict) else {}
    files = [e.get("file") for e in tables.values() if isinstance(e, dict)]   # format 1: a file per table
    ours = {"manifest.json", *DERIVED, *tables, *(PurePosixPath(f).parts[0] for f in files if isinstance(f, str) and f)}
    return all(name in ours or _derived_leftover(name) for name in os.listdir(directory))


def _derived_leftover(name: str) -> bool:
    """A lock, or a staging or replaced directory, of a ``DERIVED`` export (``staged_directory``'s names)."""
    return any(name == f".{d}.lock" or (name.startswith(f".{d}.") and name.endswith((".partial", ".old")))
               for d in DERIVED)


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
        with staged_directory(location.path, force=force, owned=_dataset_alone,
                              what="a causalsynth dataset (and what causalsynth derived into it)") as staging:
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
