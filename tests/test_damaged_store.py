"""Every stored file kind of a finished lottery, damaged every way (bytes flipped, truncated, deleted, swapped
for a folder, a link to nothing, a link loop, valid JSON of the wrong shape), against every command that reads
the store: `verify` names it (exit 1), `report` names it at the top of the report and exits non-zero (0 only
with --partial), `export` of that level is one line, and none of them changes a byte of the store. A rerun
of the lottery recomputes what was damaged and ends with the results it had. Never a traceback, never exit 0
with a result left out without a word."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from ticketlab.cli import main
from ticketlab.store import unreadable_jobs

RUN = ["lottery", "--dataset", "synthetic", "--model", "mlp_32_16", "--val-size", "500", "--train-steps", "20",
       "--eval-every", "10", "--batch-size", "32", "--levels", "1", "--quiet", "--workers", "1"]
JSON_FILES = ("summary.json", "metrics.json", "config.json")


def run(*argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
    assert "Traceback" not in err.getvalue(), err.getvalue()
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store") / "runs"
    code, _, err = run(*RUN, "--out", root)
    assert code == 0, err
    return root


def _lottery(root: Path) -> Path:
    (exp,) = root.glob("lottery_*")
    return exp


def _snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under root: a link's target, a folder's marker, a file's bytes."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            key = str(p.relative_to(root))
            out[key] = f"-> {os.readlink(p)}" if p.is_symlink() else "dir" if p.is_dir() else p.read_bytes()
    return out


def _damage(path: Path, how: str) -> None:
    if how == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        return
    if how == "truncate":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        return
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path)
    if how == "folder":
        path.mkdir()
    elif how == "dangling":
        path.symlink_to("nowhere_" + path.name)
    elif how == "loop":
        path.symlink_to(path.name)
    elif how == "wrong_shape":
        path.write_text(json.dumps([1, 2, 3]))


TARGETS = ["level_1/summary.json", "level_1/metrics.json", "level_1/mask.safetensors", "level_1/init.safetensors",
           "level_1/final.safetensors", "level_0", "config.json"]
HOWS = ["flip", "truncate", "delete", "folder", "dangling", "loop", "wrong_shape"]
CASES = [(t, h) for t in TARGETS for h in HOWS
         if not (h == "wrong_shape" and not t.endswith(JSON_FILES)) and not (t == "level_0" and h in ("flip",
                                                                                                    "truncate"))]


def _place(finished: Path, tmp_path: Path, target: str, how: str) -> tuple[Path, Path]:
    root = tmp_path / "runs"
    shutil.copytree(finished, root, symlinks=True)
    exp = _lottery(root)
    path = exp / target if target == "config.json" else exp / "seed_0" / target
    _damage(path, how)
    return root, exp


# the full report (figures: about a second each) for three kinds of damage; for the others, what the report
# reads (store.unreadable_jobs) without drawing it. The other readers for every case.
REPORTED = {how: next((t, h) for t, h in CASES if h == how and t != "config.json") for how in ("flip", "delete",
                                                                                               "loop")}


@pytest.mark.parametrize("target,how", CASES, ids=[f"{t}-{h}" for t, h in CASES])
def test_every_reader_names_the_damage_and_changes_nothing(finished, tmp_path, target, how):
    root, exp = _place(finished, tmp_path, target, how)
    before = _snapshot(root)
    code, out, err = run("verify", root)
    assert code == 1 and out.strip().endswith("problem(s) found"), (out, err)
    named = target.split("/")[0] if target != "config.json" else "config.json"
    assert named in out, out
    level = 0 if target == "level_0" else 1
    code, _, err = run("export", exp / "seed_0", "--level", level, "--out", tmp_path / "export")
    lines = err.splitlines()
    assert code not in (0, None) and len(lines) == 1 and lines[0].startswith("ticketlab: error: "), err
    if target == "config.json" and how == "wrong_shape":  # the experiment itself cannot be read: one line
        code, _, err = run("report", exp, "--out", tmp_path / "report")
        assert code not in (0, None) and err.startswith("ticketlab: error: ") and len(err.splitlines()) == 1, err
    elif REPORTED.get(how) == (target, how):
        code, _, err = run("report", exp, "--out", tmp_path / "report")
        lines = err.splitlines()
        assert code not in (0, None) and len(lines) == 1 and "could not be read" in lines[0], err
        assert f"could not be read): {exp / 'seed_0' / target.split('/')[0]}" in \
            (tmp_path / "report" / "report.md").read_text()
        code, _, err = run("report", exp, "--out", tmp_path / "partial", "--partial")
        assert code == 0 and err == "", err
    elif target != "config.json":  # what the report reads, without drawing it
        assert [line.split()[0] for line in unreadable_jobs(exp / "seed_0")] == [str(exp / "seed_0" / named)]
    assert _snapshot(root) == before  # readers never write into the store


RECOMPUTED = [("level_1/summary.json", "wrong_shape"), ("level_1/mask.safetensors", "folder"),
              ("level_1/final.safetensors", "flip"), ("level_0", "loop"), ("level_0", "dangling"),
              ("config.json", "truncate"), ("level_1/metrics.json", "delete")]


@pytest.mark.parametrize("target,how", RECOMPUTED, ids=[f"{t}-{h}" for t, h in RECOMPUTED])
def test_a_rerun_recomputes_the_damage_and_ends_with_the_same_results(finished, tmp_path, target, how):
    root, exp = _place(finished, tmp_path, target, how)
    code, out, err = run(*RUN, "--out", root, "--json")
    assert code == 0, err
    levels = json.loads(out)["levels"]
    original = [json.loads((_lottery(finished) / "seed_0" / f"level_{k}" / "summary.json").read_text())
                for k in (0, 1)]
    for got, want in zip(levels, original):
        assert got["final_test_accuracy"] == want["final_test_accuracy"]
        assert got["density"] == want["density"]
    code, out, _ = run("verify", root)
    assert code == 0, out


def test_verify_refuses_a_folder_that_is_no_store_and_names_a_link_out_of_the_store(finished, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    code, out, err = run("verify", tmp_path / "photos")
    assert code == 2 and err.startswith("ticketlab: error: ") and "is not a run store" in err
    root = tmp_path / "runs"
    shutil.copytree(finished, root, symlinks=True)
    link = _lottery(root) / "seed_0" / "level_0"
    outside = tmp_path / "elsewhere"
    shutil.copytree(link.resolve(), outside)
    link.unlink()
    link.symlink_to(outside)
    code, out, _ = run("verify", root)
    assert code == 1 and f"{link} links out of the run store" in out


def test_a_finished_lottery_is_read_back_from_a_store_it_cannot_write(finished, tmp_path, monkeypatch):
    """Every write under the store fails as on a read-only mount: the finished run is read back all the same,
    and one that needs training says it in one line."""
    import errno

    root = tmp_path / "runs"
    shutil.copytree(finished, root, symlinks=True)
    inside = str(root.resolve())

    def guard(fn, *positions):  # noqa: ANN001, ANN202
        def refused(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            for i in positions:
                if i < len(args) and os.path.realpath(os.fspath(args[i])).startswith(inside):
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(args[i]))
            return fn(*args, **kwargs)
        return refused

    real_os_open, real_open = os.open, io.open

    def os_open(path, flags, *rest, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and os.path.realpath(path).startswith(inside):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_os_open(path, flags, *rest, **kw)

    def open_(file, mode="r", *rest, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+") and \
                os.path.realpath(file).startswith(inside):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(file))
        return real_open(file, mode, *rest, **kw)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr("builtins.open", open_)
    for name, positions in (("mkdir", (0,)), ("rename", (0, 1)), ("replace", (0, 1)), ("unlink", (0,)),
                            ("symlink", (1,)), ("rmdir", (0,))):
        monkeypatch.setattr(os, name, guard(getattr(os, name), *positions))
    before = _snapshot(root)
    code, out, err = run(*RUN, "--out", root, "--json")
    assert code == 0, err
    assert [lvl["level"] for lvl in json.loads(out)["levels"]] == [0, 1]
    deeper = [*RUN[:RUN.index("--levels")], "--levels", "2", *RUN[RUN.index("--levels") + 2:]]
    code, _, err = run(*deeper, "--out", root)  # level 2 must be written
    assert code not in (0, None) and err.splitlines() == [err.strip()] and "Read-only file system" in err, err
    assert _snapshot(root) == before
