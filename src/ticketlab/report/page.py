"""One report page for every experiment kind (lottery, compare, strong, seek, sweep): the same sections in
the same order, built once as neutral blocks and rendered twice, as HTML and as Markdown, so the two always
say the same.

The sections, in order (each a <section id=...> in the HTML, an ## heading in the Markdown):

  what-was-run     the experiment in plain words: what was trained, on what, how many seeds
  headline         the one figure a reader should see first
  verdicts         the summary of verdicts, each with the rule that made it, its threshold and n
  tables           the tables people scan (pivots), then any detail tables
  figures          further figures (optional)
  configuration    settings, store folders and provenance
  reproduce        the command that makes this page again

The HTML is self-contained (styles inline, figures as embedded PNGs: it opens from disk, no server, nothing
fetched); the Markdown links the PNG files written beside it. Block kinds: h1, h2, h3, p, note, ok, bad,
list, code, table, figure, and section (id, heading), which opens a section.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..store import is_experiment, read_config

CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f2f2f2}td{font-variant-numeric:tabular-nums}
td.cell{text-align:left;min-width:15em;max-width:26em}
.note{background:#fff4c2;border:2px solid #e0a800;padding:.7em 1em;margin:1em 0;font-weight:600}
.bad{background:#fde2e2;border:2px solid #c00;padding:.5em 1em}.ok{color:#176117}
section{margin:0 0 1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.15em}
pre{background:#f6f6f6;border:1px solid #ddd;padding:.6em 1em;overflow-x:auto;white-space:pre-wrap}
figure{margin:1.2em 0}img{max-width:100%}figcaption{font-size:13px;color:#444}"""
NUMERIC_COLUMNS = 24  # a table's columns of numbers only are right-aligned (table class n<i>), up to this many
CSS += "".join(f"table.n{i} td:nth-child({i}),table.n{i} th:nth-child({i}){{text-align:right}}"
               for i in range(1, NUMERIC_COLUMNS + 1))
SECTIONS = {"what-was-run": "What was run", "headline": "Headline result", "verdicts": "Summary of verdicts",
            "tables": "Tables", "figures": "More figures", "configuration": "Configuration and provenance",
            "reproduce": "Reproduce"}
REQUIRED = ("what-was-run", "headline", "verdicts", "tables", "configuration", "reproduce")


class Picture(NamedTuple):
    """A figure written as a PNG only (a figure drawn by figures._save is a Drawn: PNG and SVG)."""
    png: Path


@dataclass
class Page:
    """A report's content by section; `blocks()` puts it in the one order every page has."""
    title: str
    ran: list[tuple]  # blocks: what was run
    headline: tuple  # ("figure", drawn, caption)
    verdicts: list[tuple]  # blocks: the summary of verdicts
    tables: list[tuple]  # blocks: pivots first
    configuration: list[tuple]  # blocks: settings and provenance
    command: str  # the command that reproduces the page
    warnings: list[tuple] = field(default_factory=list)  # note / bad blocks, shown before any number
    figures: list[tuple] = field(default_factory=list)  # further figures, after the tables
    reproduce_text: str = "Run from the folder the run store lives in; finished jobs are read back, not trained."

    def blocks(self) -> list[tuple]:
        out: list[tuple] = [("h1", self.title), *self.warnings]
        parts = {"what-was-run": self.ran, "headline": [self.headline], "verdicts": self.verdicts,
                 "tables": self.tables, "figures": self.figures, "configuration": self.configuration,
                 "reproduce": [("p", self.reproduce_text), ("code", self.command)]}
        for key, heading in SECTIONS.items():
            if parts[key] or key in REQUIRED:  # a required section with nothing in it would be a defect: say so
                out += [("section", key, heading), *(parts[key] or [("p", "Nothing to show.")])]
        return out


def write_page(page: Page, out: Path, names: tuple[str, ...] = ("report",)) -> dict[str, Path]:
    """The page as <name>.html and <name>.md for each name (a kind keeps its own file name, e.g. compare.html,
    and gains report.html); returns {"html": ..., "md": ...} of the first name and "<name>_html"/"_md" of the
    others."""
    blocks = page.blocks()
    text_html, text_md = render_html(blocks, page.title), render_md(blocks)
    files: dict[str, Path] = {}
    for i, name in enumerate(names):
        for kind, text in (("html", text_html), ("md", text_md)):
            path = out / f"{name}.{kind}"
            path.write_text(text, encoding="utf-8")
            files[kind if i == 0 else f"{name}_{kind}"] = path
    return files


ALWAYS_SHOWN = {"lottery.rewind_step", "lottery.levels"}  # meaningful even at 0 (0 = reset to init / dense only)


def notes(cfg: dict[str, Any]) -> list[str]:
    """`note` and `notes` at config.json's top level, each a string or a list of strings."""
    out = []
    for key in ("note", "notes"):
        value = cfg.get(key)
        out += [str(v) for v in (value if isinstance(value, list) else [value] if value else [])]
    return out


def hparams(config: dict[str, Any]) -> list[tuple[str, str]]:
    """Dotted hyper-parameters, leaving out the trivial ones (None, empty, off, 0) that change nothing."""
    out = []
    for section, values in config.items():
        for key, v in (values.items() if isinstance(values, dict) else [(None, values)]):
            name = section if key is None else f"{section}.{key}"
            trivial = v is None or v is False or v == [] or v == {} or (v == 0 and not isinstance(v, bool))
            if name == "training.gamma" and not config.get("training", {}).get("milestones"):
                trivial = True  # gamma does nothing without milestones
            if not trivial or name in ALWAYS_SHOWN:
                out.append((name, json.dumps(v) if isinstance(v, (list, dict)) else str(v)))
    return out


def config_table(exp_dir: Path) -> list[tuple[str, str]]:
    """An experiment's config.json as rows: its hash, its settings, its provenance and anything else it says."""
    cfg = read_config(exp_dir)
    extra = {k: v for k, v in cfg.items() if k not in ("config", "hash", "provenance", "note", "notes")}
    rows = [("hash", str(cfg.get("hash")))] + hparams(cfg.get("config", {}))
    rows += [(f"provenance.{k}", str(v)) for k, v in cfg.get("provenance", {}).items()]
    rows += [(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in extra.items()]
    return rows


def experiment_of(job_dir: str | Path) -> Path | None:
    """The experiment folder (the one holding config.json) a job folder lies in, or None (not on this disk)."""
    for p in (Path(job_dir), *Path(job_dir).parents[:3]):
        if is_experiment(p):
            return p
    return None


def configuration(job_dirs: list[str | Path], settings: list[tuple[str, str]] | None = None) -> list[tuple]:
    """The configuration section of a report over jobs of several experiment folders: every folder with its
    hash, then the first folder's config.json in full (the folders differ only in what the tables name: method,
    k, swept setting); `settings` (the command's) when no folder is on this disk."""
    folders = list(dict.fromkeys(e for e in map(experiment_of, job_dirs) if e is not None))
    blocks: list[tuple] = []
    if settings and not folders:  # the folders' config.json say it all, in full, when they are on this disk
        blocks.append(("table", ["setting", "value"], settings))
    if folders:
        blocks += [("p", f"Run store folders ({len(folders)}):"),
                   ("table", ["folder", "hash"], [[str(f), str(read_config(f).get("hash"))] for f in folders]),
                   ("p", f"Settings and provenance of {folders[0].name} (the others differ as the tables say):"),
                   ("table", ["setting", "value"], config_table(folders[0]))]
    if not blocks:
        blocks.append(("p", "No run folder of these results is on this disk: no stored configuration to show."))
    return blocks


def _e(text: str) -> str:
    """Escaped text, with the verdict's Markdown emphasis turned into HTML's."""
    return html.escape(str(text)).replace("*matching*", "<em>matching</em>")


NUMBER = re.compile(r"[-+]?(\d[\d.,]*(e[-+]?\d+)?|n/a|-)( ?[±\[].*)?( \(.*\))?")  # 41.70, 83.25 ± 3.18, 2 (+1 ...)


def _cell_html(c: str) -> str:
    """A table cell: a cell of several lines (a pivot's mean, range, density and verdict) keeps its lines."""
    text = str(c)
    if "\n" not in text:
        return f"<td>{_e(text)}</td>"
    return "<td class='cell'>" + "<br>".join(_e(line) for line in text.split("\n")) + "</td>"


def render_html(blocks: list[tuple], title: str) -> str:
    e = _e  # every piece of text goes through html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
             f"<style>{CSS}</style></head><body>"]
    open_section = False
    for kind, *args in blocks:
        if kind == "section":
            parts.append(("</section>" if open_section else "") + f"<section id='{e(args[0])}'><h2>{e(args[1])}</h2>")
            open_section = True
        elif kind in ("h1", "h2", "h3", "p"):
            parts.append(f"<{kind}>{e(args[0])}</{kind}>")
        elif kind in ("note", "ok", "bad"):
            parts.append(f"<div class='{kind}'>{e(args[0])}</div>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in args[0]) + "</ul>")
        elif kind == "code":
            parts.append(f"<pre><code>{e(args[0])}</code></pre>")
        elif kind == "table":
            num = [bool(args[1]) and all(NUMBER.fullmatch(str(r[i])) for r in args[1] if i < len(r))
                   for i in range(len(args[0]))]  # a column of numbers only: right-aligned, the rest left
            head = "".join(f"<th>{e(h)}</th>" for h in args[0])
            body = "".join("<tr>" + "".join(_cell_html(c) for c in r) + "</tr>" for r in args[1])
            right = " ".join(f"n{i + 1}" for i, n in enumerate(num) if n and i < NUMERIC_COLUMNS)
            parts.append(f"<table{f' class={chr(39)}{right}{chr(39)}' if right else ''}><thead><tr>{head}</tr></thead>"
                         f"<tbody>{body}</tbody></table>")
        elif kind == "figure":
            data = base64.b64encode(args[0].png.read_bytes()).decode()
            parts.append(f"<figure><img alt='{e(args[0].png.stem)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{e(args[1])}</figcaption></figure>")
    return "\n".join(parts) + ("\n</section>" if open_section else "") + "\n</body></html>\n"


def md_text(text: str) -> str:
    """One line, and no raw HTML (a note saying '<b>' must show, not render)."""
    return " ".join(str(text).split()).replace("<", "&lt;")


def render_md(blocks: list[tuple]) -> str:
    cell = lambda s: "<br>".join(md_text(line) for line in str(s).split("\n")).replace("|", "\\|")  # noqa: E731
    parts = []
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append(f"{'#' * int(kind[1])} {args[0]}")
        elif kind == "section":
            parts.append(f"## {args[1]}")
        elif kind in ("p", "ok"):
            parts.append(md_text(args[0]))
        elif kind in ("note", "bad"):
            parts.append(f"> **{md_text(args[0])}**")
        elif kind == "list":
            parts.append("\n".join(f"- {md_text(item)}" for item in args[0]))
        elif kind == "code":
            parts.append(f"```\n{args[0]}\n```")
        elif kind == "table":
            lines = ["| " + " | ".join(cell(h) for h in args[0]) + " |", "|" + "---|" * len(args[0])]
            parts.append("\n".join(lines + ["| " + " | ".join(cell(c) for c in r) + " |" for r in args[1]]))
        elif kind == "figure":
            parts.append(f"![{args[0].png.stem}]({args[0].png.name})\n\n*{args[1]}*")
    return "\n\n".join(parts) + "\n"


def command_line(argv: list[str]) -> str:
    """A command as a user would type it again: `ticketlab` and its arguments, quoted for a POSIX shell."""
    import shlex

    return "ticketlab " + shlex.join(argv)
