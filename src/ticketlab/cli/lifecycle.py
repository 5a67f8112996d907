"""The process around a command: SIGTERM ends a run like Ctrl-C, errors become one line and an exit code.

Exit codes: 0 done; 1 a failed write (disk full, read-only, ...) or `verify` found problems; 2 bad input (a
TicketlabError, or argparse's one line); 130 Ctrl-C; 143 SIGTERM. Both signals unwind the same way (atomic
writes leave the old file or none; checkpoints stay), so rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import sys
import threading
from typing import Any, Callable

from ..errors import TicketlabError
from ..store import DEFAULT_ROOT


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread where it arrives, as Ctrl-C raises KeyboardInterrupt: the same
    unwinding, then one line and exit 143."""


def _on_sigterm(signum: int, frame: Any) -> None:
    import multiprocessing

    for child in multiprocessing.active_children():  # worker processes stop with us; their jobs resume later
        child.terminate()
    raise Terminated


# errno values that say a write failed for a reason the user can fix (disk full, read-only, not a folder, ...)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
                 errno.EFBIG, errno.ENAMETOOLONG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def io_message(e: OSError, args: argparse.Namespace) -> str:
    """An OSError as one line: 'cannot write <path>: <reason>' for a failed write; the path from the error,
    or else where this command writes."""
    target = {"report": args.out or "the report folder", "export": args.out or "the current folder"}.get(
        args.command, args.out or DEFAULT_ROOT) if hasattr(args, "out") else None
    path = e.filename if e.filename is not None else target
    if path is not None:  # an atomic write's temporary file (.<name>.<random>.tmp): name the file it stands for
        tmp = re.fullmatch(r"\.(.+)\.[^.]+\.tmp", os.path.basename(os.fsdecode(path)))
        path = os.path.join(os.path.dirname(os.fsdecode(path)), tmp.group(1)) if tmp else path
    reason = e.strerror or " ".join(str(e).split()) or type(e).__name__
    inside = target is not None and path is not None and os.path.abspath(os.fsdecode(path)).startswith(
        os.path.abspath(os.fsdecode(target)))
    if e.errno in _WRITE_ERRNOS or e.errno is None or inside:
        return f"cannot write {path}: {reason}"
    return f"{path}: {reason}"


def one_line(message: str) -> str:
    """A message as one printable line: control characters (a flag's value may hold any, and some of them,
    such as \\x1e, end a line) written as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """`command(args)` with SIGTERM handled like Ctrl-C and every failure said in one line."""
    installed = threading.current_thread() is threading.main_thread()
    if installed:
        previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return command(args)
    except TicketlabError as e:
        print(f"ticketlab: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `ticketlab ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a full or read-only disk, --out a file, ...: once here, not at every write
        print(f"ticketlab: error: {one_line(io_message(e, args))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        if installed:  # a second signal now would interrupt this line
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        name, code = ("SIGTERM", 143) if isinstance(e, Terminated) else ("SIGINT", 130)
        print(f"ticketlab: stopped by {name}; rerun the same command to resume", file=sys.stderr)
        return code
    finally:
        if installed:  # as they were (main is also called in-process, e.g. by tests)
            for signum, handler in zip((signal.SIGTERM, signal.SIGINT), previous):
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
