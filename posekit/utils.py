"""Small helpers shared by the I/O layers: atomic writes, devices.

Every file posekit writes goes through :func:`atomic_write_bytes`: the bytes go to a temporary
file in the target's folder, which is then renamed over the target, so a reader never sees a
half-written file. The temporary name (``.posekit-<pid>-<random>.tmp``) does not grow with the
target's name, and names its writer's process: a write killed before its rename leaves a
temporary file whose process is gone, and the next atomic write into that folder removes it."""
from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

TEMP_PREFIX = ".posekit-"
TEMP_SUFFIX = ".tmp"
_swept: set[str] = set()  # folders already cleaned of dead writers' temporary files by this process


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed atomic writes left in ``folder`` (their writing
    process no longer runs). Returns the files removed; a missing folder is no error."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if not (e.name.startswith(TEMP_PREFIX) and e.name.endswith(TEMP_SUFFIX)):
            continue
        pid = e.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            try:
                os.unlink(e.path)
                removed.append(Path(e.path))
            except OSError:
                pass
    return removed


def temp_path(target: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``target`` (``.posekit-<pid>-<random>.tmp``: short whatever
    the target's name, and swept by the next atomic write into that folder once its process is
    gone), for a file that is written in steps and renamed over ``target`` when complete."""
    p = Path(target)
    key = str(p.parent.resolve())
    if key not in _swept:
        remove_stale_temps(p.parent)
        _swept.add(key)
    return p.parent / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers never see it half-written.

    Raises OSError whose ``filename`` is ``path`` (not the temporary file) when the folder cannot
    be written or the disk is full; nothing is left behind then."""
    atomic_write_files({path: data})


def atomic_write_files(files: dict) -> None:
    """Write the files of one result (``{path: bytes}``) so that none of them appears unless all
    of them do: each is written beside its target first, then :func:`replace_together`.

    Raises OSError naming the target (not a temporary file); nothing is left behind then."""
    written: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            p = Path(path)
            _make_folder(p.parent)
            tmp = temp_path(p)
            written.append((tmp, p))
            _write_new(tmp, p, data)
    except BaseException:
        for tmp, _ in written:
            _unlink_quietly(tmp)
        raise
    replace_together(written)


def named_error(e: OSError, target: str | os.PathLike) -> OSError:
    """``e`` again, its ``filename`` the file the user asked for (not a temporary name)."""
    return OSError(e.errno, e.strerror or str(e), str(target))


def in_the_way(folder: str | os.PathLike) -> tuple[Path, str] | None:
    """What keeps ``folder`` from being created, if anything: (its nearest existing ancestor,
    "a file" or "a broken link") when that is not a folder; else None."""
    probe = Path(folder)
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if probe.is_symlink() and not probe.exists():
        return probe, "a broken link"
    if os.path.lexists(probe) and not probe.is_dir():
        return probe, "a file"
    return None


def _make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents; what is in the way is named (not "File exists")."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        blocked = in_the_way(folder)
        if blocked is not None:
            raise NotADirectoryError(errno.ENOTDIR, f"is {blocked[1]}, not a folder", str(blocked[0])) from None
        raise named_error(e, folder) from None


def _write_new(tmp: Path, target: Path, data: bytes) -> None:
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError as e:
        raise named_error(e, target) from None


def replace_together(pairs: list) -> None:
    """Rename finished temporary files over their targets (``pairs`` of (temp, target)), all of
    them or none: a folder in the way is refused before anything is renamed, and when a rename
    fails part way the targets already replaced get their earlier files back (each kept under a
    temporary name, a hard link where the file system allows, until all are in place). On
    failure every temporary file is removed.

    Raises OSError whose ``filename`` is the target."""
    pairs = [(Path(tmp), Path(target)) for tmp, target in pairs]
    moved: list[tuple[Path | None, Path]] = []  # replaced: (where its earlier file is kept, target)
    target = None
    try:
        for _, target in pairs:
            if target.is_dir():
                raise IsADirectoryError(errno.EISDIR, "a folder is in the way", str(target))
        for tmp, target in pairs:
            kept = _keep_earlier(target) if len(pairs) > 1 else None
            try:
                os.replace(tmp, target)
            except BaseException:
                if kept is not None:
                    _give_back(kept, target)
                raise
            moved.append((kept, target))
    except BaseException as e:
        _undo(moved)
        for tmp, _ in pairs:
            _unlink_quietly(tmp)
        if isinstance(e, OSError) and target is not None:
            raise named_error(e, target) from None
        raise
    for kept, _ in moved:
        if kept is not None:
            _unlink_quietly(kept)


def _keep_earlier(target: Path) -> Path | None:
    """The earlier file at ``target`` kept under a temporary name (a hard link, else moved
    there); None when there is none."""
    if not os.path.lexists(target):
        return None
    kept = temp_path(target)
    try:
        os.link(target, kept)
    except OSError:
        os.replace(target, kept)
    return kept


def _undo(moved: list) -> None:
    """Give the replaced targets their earlier files back (remove those that had none)."""
    for kept, target in reversed(moved):
        try:
            if kept is not None:
                _give_back(kept, target)
            else:
                os.unlink(target)  # new in this run: there is no earlier file to give back
        except OSError:
            pass


def _give_back(kept: Path, target: Path) -> None:
    """Put the earlier file kept as ``kept`` back at ``target`` (a hard link to the file still
    there is only removed: renaming a link over its own file does nothing)."""
    if os.path.lexists(target) and os.path.samefile(kept, target):
        os.unlink(kept)
    else:
        os.replace(kept, target)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike | None, obj) -> None:
    """A JSON report (indent 1, one line at the end) written atomically to ``path``; None: nothing
    (a benchmark run without ``--json``)."""
    if path:
        import json

        atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_write_bytes`."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def select_device(device: str | None = None):
    """``cuda`` when available unless told otherwise, else ``cpu``.

    Raises ConfigError for an unknown device or a CUDA device on a machine without one."""
    import torch

    from posekit.errors import ConfigError

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but no CUDA GPU is available here")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def check_writable_folder(path: str | os.PathLike, what: str = "output folder") -> None:
    """Refuse, before any work, an output folder that is a file or that cannot be created or
    written (its nearest existing parent is read-only). Creates nothing."""
    from posekit.errors import PosekitError

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise PosekitError(f"{p}: {what} must be a folder, and this is a file")
    blocked = in_the_way(p)
    if blocked is not None:
        raise PosekitError(f"{p}: {what} cannot be created: {blocked[0]} is {blocked[1]}")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PosekitError(f"{p}: {what} cannot be written (no write permission in {probe})")


def check_output_file(path: str | os.PathLike, what: str) -> None:
    """Refuse, before any work, an output file that cannot be written: a folder in its place, or
    a folder for it that is a file or cannot be created (:func:`check_writable_folder`).
    ``what`` names it in the message (an option such as ``--out``). Creates nothing."""
    from posekit.errors import PosekitError

    p = Path(path)
    if p.is_dir():
        raise PosekitError(f"{p}: {what} must be a file, and this is a folder")
    blocked = in_the_way(p.parent)
    if blocked is not None:
        raise PosekitError(f"{p}: {what} cannot be written: {blocked[0]} is {blocked[1]}")
    check_writable_folder(p.parent, f"the folder of {what}")


def derive_seed(seed: int, *keys) -> int:
    """The seed of one random stream of a run: derived from the run's ``seed`` and ``keys``
    (ints or strings naming the stream, e.g. ("augment", epoch, index)) with
    ``numpy.random.SeedSequence``, so streams never collide. Returns an int in [0, 2**32)."""
    import zlib

    import numpy as np

    words = [k if isinstance(k, int) else zlib.crc32(str(k).encode()) for k in keys]
    return int(np.random.SeedSequence(int(seed), spawn_key=tuple(int(w) for w in words)).generate_state(1)[0])
