"""All-or-nothing outputs, shared by every command that writes a file or directory.

Four promises, kept here once for every command:

* An output is never one of the command's inputs, nor inside one, nor contains
  one — with ``--overwrite`` or without (``check_new_output``): replacing it
  would destroy the input. An output whose directory cannot be written is
  refused there too, before the work that would be lost.
* An output is written to a hidden temporary sibling (``.NAME.partial-HOST-PID``)
  and published under its real name only when complete, so a crash, Ctrl-C or
  SIGKILL never leaves a half-written result under the real name.
* Publishing never replaces what appeared under the real name meanwhile (a
  concurrent run) unless the user asked (``--overwrite``): on Linux the rename
  is ``renameat2(RENAME_NOREPLACE)``, atomic check and rename in one call.
* Replacing an existing output leaves the old or the new one under the real
  name at every instant: ``renameat2(RENAME_EXCHANGE)`` swaps them, then the old
  one (now under the temporary name) is removed.

Where ``renameat2`` is missing (not Linux, an old C library, a file system
without the flags), publishing falls back to a hard link for files (which also
refuses an existing name) and a check-then-rename for directories, and a
replacement to moving the old output aside first. Siblings left by killed runs
are removed by the next run that writes the same output, once their process is
gone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import glob
import io
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from ecgtool.errors import EcgtoolError, output_error

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_SIBLING_KINDS = ("partial", "old")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file or directory: the same after links are resolved, or hard links to one file."""
    ra, rb = os.path.realpath(a), os.path.realpath(b)
    return ra == rb or (os.path.exists(ra) and os.path.exists(rb) and os.path.samefile(ra, rb))


def check_apart(output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse an output that is an input, lies inside one, or contains one: with links resolved, and also as the paths
    are written (absolute, links not resolved). The second catches an output reached through a link inside an input
    (``raw/sub/x.zarr`` where ``raw/sub`` links to a directory of inputs elsewhere), which resolving alone takes out
    of the input."""
    out = Path(os.path.realpath(output))
    out_lexical = Path(os.path.abspath(output))
    for given in inputs:
        if given is None:
            continue
        inp = Path(os.path.realpath(given))
        inp_lexical = Path(os.path.abspath(given))
        if same_file(out, inp) or out_lexical == inp_lexical:
            raise EcgtoolError(f"the output {output} is the input {given}; writing it would destroy the input")
        if inp in out.parents or inp_lexical in out_lexical.parents:
            raise EcgtoolError(f"the output {output} lies inside the input {given}; write it elsewhere")
        if out in inp.parents or out_lexical in inp_lexical.parents:
            raise EcgtoolError(f"the output {output} contains the input {given}; replacing it would destroy the input")


def check_new_output(path: str | os.PathLike, overwrite: bool, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Refuse, before any work: an output among the ``inputs``, an existing output (unless
    ``overwrite``), or a missing parent directory."""
    path = Path(path)
    check_apart(path, inputs)
    if os.path.lexists(path) and not overwrite:
        raise EcgtoolError(f"{path} already exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise EcgtoolError(f"the directory {path.parent} for {path.name} does not exist")
    check_writable(path)
    return path


def check_writable(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output that this process cannot create: its directory (or, where that is still to be
    made, the nearest directory that exists) is on a read-only file system or not writable. Found only when the output
    is written, it would cost the whole run (hours of training). A late failure is still reported by
    :func:`atomic_output`, naming the output: ``os.access`` can be wrong (ACLs, network file systems) and a directory
    can change meanwhile."""
    path = Path(path)
    directory = path.parent
    while not directory.is_dir() and directory != directory.parent:
        directory = directory.parent
    if os.access(directory, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        return
    try:
        readonly = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        readonly = False
    why = f"the directory {directory} is on a read-only file system" if readonly else f"no permission to write in the directory {directory}"
    raise EcgtoolError(f"{path}: cannot write the output: {why}")


def temporary_sibling(final: Path, kind: str = "partial") -> Path:
    """``.NAME.KIND-HOST-PID``: the host too, because on a shared file system (a cluster) only
    the machine that ran a process can tell whether it is gone."""
    return final.with_name(f".{final.name}.{kind}-{socket.gethostname()}-{os.getpid()}")


def sibling_of(path: Path) -> str | None:
    """The real name whose temporary sibling ``path`` is (``.NAME.partial-HOST-PID`` → ``NAME``), or None.
    Readers refuse such a path: a write killed between marking its output complete and renaming it
    leaves a complete-looking sibling that is still not an output."""
    name = Path(path).name
    for kind in _SIBLING_KINDS:
        head, sep, tail = name.rpartition(f".{kind}-")
        if sep and head.startswith(".") and len(head) > 1 and tail.rpartition("-")[2].isdigit():
            return head[1:]
    return None


def remove(path: Path) -> None:
    if not os.path.lexists(path):
        return  # nothing to do; unlink would fail anyway on a read-only file system (EROFS, not "no such file")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_stale_siblings(final: Path) -> list[Path]:
    """Remove the ``.NAME.partial-PID``/``.NAME.old-PID`` siblings of ``final`` whose process is gone
    (a killed run's leftovers); return what was removed."""
    removed = []
    if not final.parent.is_dir():
        return removed
    host = socket.gethostname()
    for kind in _SIBLING_KINDS:
        prefix = f".{final.name}.{kind}-"
        for sibling in final.parent.glob(f"{glob.escape(prefix)}*"):
            owner, _, pid = sibling.name[len(prefix):].rpartition("-")
            if owner not in (host, "") or not pid.isdigit():
                continue  # another machine's run (it alone can tell whether it is gone), or not ours at all
            if int(pid) != os.getpid() and not _alive(int(pid)):
                remove(sibling)
                removed.append(sibling)
    return removed


def _libc_renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2_fn = _libc_renameat2()


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2(src, dst, flags)``: True when done, False when this system cannot do it
    (no such call, or flags the file system does not support); any other failure raises OSError."""
    if _renameat2_fn is None:
        return False
    if _renameat2_fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def _appeared(final: Path) -> EcgtoolError:
    return EcgtoolError(f"{final} appeared while this run was writing it (another run?); it was left as it is and "
                        "this run's output discarded; pass --overwrite to replace it")


def publish(tmp: Path, final: Path, overwrite: bool) -> None:
    """Move a finished temporary output to its real name: atomically refused if something is
    there and ``overwrite`` is off, atomically swapped in (old removed afterwards) if it is on."""
    try:
        if _renameat2(tmp, final, _RENAME_NOREPLACE):
            return
    except FileExistsError:
        if not overwrite:
            raise _appeared(final) from None
        _check_same_kind(tmp, final)
        if _renameat2(tmp, final, _RENAME_EXCHANGE):
            remove(tmp)  # the temporary name now holds the previous output
            return
    # Fallbacks where renameat2 cannot serve.
    if os.path.lexists(final):
        if not overwrite:
            raise _appeared(final)
        _check_same_kind(tmp, final)
        _replace_in_two_steps(tmp, final)
    elif tmp.is_dir():
        os.rename(tmp, final)  # onto a name that appeared meanwhile, this fails unless it is an empty directory
    else:
        try:
            os.link(tmp, final)  # refuses an existing name atomically
        except FileExistsError:
            raise _appeared(final) from None
        tmp.unlink()


def _check_same_kind(tmp: Path, final: Path) -> None:
    """--overwrite replaces an output by one of its kind: a file never replaces a directory, nor the reverse."""
    if tmp.is_dir() != (final.is_dir() and not final.is_symlink()):
        kind = "a directory" if final.is_dir() else "a file"
        raise EcgtoolError(f"{final} is {kind}; --overwrite replaces an output of the same kind only (remove it yourself)")


def _replace_in_two_steps(tmp: Path, final: Path) -> None:
    """Replace without an atomic exchange: the old output is moved aside, the new one moved in,
    the old one removed (a kill between the two renames leaves the old one in the ``.old-PID`` sibling)."""
    old = temporary_sibling(final, "old")
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        os.replace(old, final)  # put the previous output back
        raise
    remove(old)


@contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool, directory: bool = False,
                  inputs: Iterable[str | os.PathLike | None] = ()) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is published as ``path``, on failure it disappears."""
    final = check_new_output(path, overwrite, inputs)
    tmp = temporary_sibling(final)
    try:
        try:
            # inside the try: on a read-only file system even removing an absent name fails (EROFS), and that error
            # names the hidden temporary sibling, not the output the user asked for
            remove_stale_siblings(final)
            remove(tmp)
            if directory:
                tmp.mkdir()
            yield tmp
            publish(tmp, final, overwrite)
        except OSError as e:  # a full disk, a quota, permissions: one sentence naming the output
            raise output_error(final, e) from e
    finally:
        if os.path.lexists(tmp):
            remove(tmp)


class _RecordingFile(io.BufferedWriter):
    """A file written through Python that keeps the first OSError its writes met (``error``)."""

    error: OSError | None = None

    def write(self, data) -> int:
        try:
            return super().write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as e:
            self.error = self.error or e
            raise


@contextmanager
def output_file(tmp: str | os.PathLike) -> Iterator[BinaryIO]:
    """``tmp`` (what :func:`atomic_output` yields) opened to write bytes, flushed, synced to disk and closed after the
    block, for writers that hide why a write failed: torch.save's C++ zip writer turns the OSError that a full disk
    raised in its file's write() into ``RuntimeError("[enforce fail at inline_container.cc] unexpected pos …")``.
    The file keeps that OSError, and a failure of the block after one is raised as it, which :func:`atomic_output`
    reports in one sentence naming the output."""
    f = _RecordingFile(io.FileIO(tmp, "w"))
    try:
        try:
            yield f
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()
    except Exception as e:
        if f.error is None or e is f.error:
            raise
        raise f.error from e
