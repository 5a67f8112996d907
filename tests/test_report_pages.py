"""Every report kind's page (lottery, compare, strong, seek, sweep), from small real runs on the synthetic and
planted data: the same sections in the same order, the headline figure first and loadable, every table with
its header and full rows, no empty section, the stated rule beside the verdicts, and the same sections in the
Markdown twin. Pages are parsed as HTML (html.parser), not matched as strings."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import pytest
from PIL import Image

from conftest import small_config
from ticketlab import build_config
from ticketlab.experiments.compare import run_compare
from ticketlab.experiments.seek import run_seek
from ticketlab.experiments.strong import run_strong
from ticketlab.experiments.study import StudyPlan, parse_controls, run_study
from ticketlab.experiments.sweep import run_sweep
from ticketlab.report import html as lottery_report, methods, seek, strong, sweep
from ticketlab.report.page import REQUIRED, SECTIONS

FAST = {"training": {"train_steps": 40, "eval_every": 20, "batch_size": 50}}
OWN_NAMES = {"lottery": ("report",), "compare": ("compare", "report"), "strong": ("strong", "report"),
             "seek": ("seek", "report"), "sweep": ("sweep", "report")}


@pytest.fixture(scope="module")
def pages(tmp_path_factory, synthetic):
    root, out = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("reports")
    config = small_config(**FAST, pruning={"rate": 0.5})
    study = run_study(StudyPlan(config, replicates=2, controls=parse_controls("reinit", reps=1)), data=synthetic,
                      root=root)
    files = {"lottery": lottery_report.write_report([study.experiment_dir], out / "lottery")}
    compared = run_compare(config, ["imp", "random"], [0.25], replicates=3, checks=("reinit",), data=synthetic,
                           root=root)
    files["compare"] = methods.write_report(compared, out / "compare", "compare test", command="ticketlab compare x")
    strong_config = small_config(kind="train", **FAST)
    learned = run_strong(strong_config, "edge-popup", [0.3, 0.6], replicates=2, data=synthetic, root=root)
    files["strong"] = strong.write_report(learned.rows, out / "strong", "strong test", 0.1)
    planted = build_config({"kind": "lottery", "model": {"name": "planted_relu_5_50"},
                            "training": {"train_steps": 20, "eval_every": 10}})
    sought = run_seek(planted, ["random", "magnitude"], [0.05], root=root)
    files["seek"] = seek.write_report(sought, out / "seek", "seek test")
    swept = run_sweep(small_config(kind="train", **FAST, dataset={"subsample": 600}), {"model.width": [0.5, 1]},
                      root=root)
    files["sweep"] = sweep.write_report(swept, out / "sweep", "sweep test")
    return files


class _Page(HTMLParser):
    """Sections (id -> the tags and text inside), tables (header cells, rows of cells) and images."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.tables: list[dict] = []
        self.images: list[tuple[str | None, str]] = []  # (section id, src)
        self.section: str | None = None
        self.cell: list[str] | None = None
        self.in_head = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs["id"]
            self.sections[self.section] = {"tags": [], "text": ""}
        elif self.section is not None:
            self.sections[self.section]["tags"].append(tag)
        if tag == "table":
            self.tables.append({"head": [], "rows": [], "section": self.section})
        elif tag == "thead":
            self.in_head = True
        elif tag == "tbody":
            self.in_head = False
        elif tag == "tr" and not self.in_head:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "img":
            self.images.append((self.section, attrs["src"]))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            text = "".join(self.cell).strip()
            (self.tables[-1]["head"] if tag == "th" else self.tables[-1]["rows"][-1]).append(text)
            self.cell = None
        elif tag == "section":
            self.section = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)
        if self.section is not None:
            self.sections[self.section]["text"] += data


def _parse(path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


KINDS = list(OWN_NAMES)


@pytest.mark.parametrize("kind", KINDS)
def test_every_page_has_the_sections_in_order_and_none_is_empty(pages, kind):
    page = _parse(pages[kind]["html"])
    ids = list(page.sections)
    assert [i for i in ids if i in REQUIRED] == list(REQUIRED)  # all of them, in the one order
    assert ids == [i for i in SECTIONS if i in ids]  # optional ones (more figures) in their place
    for sid, body in page.sections.items():
        text = body["text"].replace(SECTIONS[sid], "", 1).strip()
        assert text or "img" in body["tags"], f"{kind}: section {sid} is empty"
        assert "Nothing to show." not in body["text"], f"{kind}: section {sid} has nothing in it"


@pytest.mark.parametrize("kind", KINDS)
def test_the_headline_figure_comes_first_and_is_a_loadable_png(pages, kind):
    page = _parse(pages[kind]["html"])
    sections = [s for s, _ in page.images]
    assert sections[0] == "headline" and sections.count("headline") == 1  # the first image of the page
    assert list(page.sections).index("headline") < list(page.sections).index("verdicts")
    for _, src in page.images:
        assert src.startswith("data:image/png;base64,")  # embedded: the page needs no server, no other file
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.load()
        assert image.format == "PNG" and image.width > 300 and image.height > 200


@pytest.mark.parametrize("kind", KINDS)
def test_every_table_has_its_header_and_full_rows(pages, kind):
    page = _parse(pages[kind]["html"])
    assert page.tables and any(t["section"] == "tables" for t in page.tables)
    for t in page.tables:
        assert t["head"] and all(t["head"]), f"{kind}: a table without a full header"
        assert t["rows"], f"{kind}: a table without rows under {t['head']}"
        assert all(len(r) == len(t["head"]) for r in t["rows"]), f"{kind}: a row short of {t['head']}"


@pytest.mark.parametrize("kind, rule", [("lottery", "dense seeds' std"), ("compare", "Welch's t-test"),
                                        ("strong", "Welch's t-test"), ("seek", "Welch's t-test"),
                                        ("sweep", "Interpolation threshold")])
def test_the_verdicts_state_their_rule_and_the_page_its_command(pages, kind, rule):
    page = _parse(pages[kind]["html"])
    assert rule in page.sections["verdicts"]["text"]
    assert "pre" in page.sections["reproduce"]["tags"]
    assert re.search(r"\bticketlab \w+", page.sections["reproduce"]["text"])
    raw = pages[kind]["html"].read_text()
    assert "http://" not in raw and "https://" not in raw and "<link" not in raw and "<script" not in raw


@pytest.mark.parametrize("kind", KINDS)
def test_markdown_has_the_same_sections_and_the_kinds_own_files_stay(pages, kind):
    files = pages[kind]
    md = files["md"].read_text()
    headings = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    wanted = [SECTIONS[s] for s in _parse(files["html"]).sections]
    assert [h for h in headings if h in SECTIONS.values()] == wanted
    folder = files["html"].parent
    for name in OWN_NAMES[kind]:
        assert (folder / f"{name}.html").is_file() and (folder / f"{name}.md").is_file()
    assert (folder / "report.html").read_text() == files["html"].read_text()  # the same page under both names


def test_compare_pivots_and_the_rule_decides_with_three_seeds(pages):
    page = _parse(pages["compare"]["html"])
    main, checks = [t for t in page.tables if t["section"] == "tables"][:2]
    assert main["head"] == ["method", "25% kept"] and [r[0] for r in main["rows"]] == ["imp", "random"]
    assert checks["head"] == ["sanity check", "25% kept"]
    assert [r[0] for r in checks["rows"]] == ["imp: re-initialised", "random: re-initialised"]
    for row in main["rows"]:  # three seeds a side: a tested verdict, its level and n beside it
        assert "vs dense: " in row[1] and "Welch's t, α = 0.05, n = 3)" in row[1] and "(n=3)" in row[1]
    for row in checks["rows"]:
        assert "Welch's t, α = 0.05, n = 3)" in row[1]


def test_with_fewer_than_three_seeds_a_verdict_is_inconclusive(pages):
    verdicts = _parse(pages["seek"]["html"]).sections["verdicts"]["text"]  # one seed
    assert verdicts.count("against the dense network: inconclusive (n = 1)") == 2
    strong_verdicts = _parse(pages["strong"]["html"]).sections["verdicts"]["text"]  # two seeds
    assert "against k = " in strong_verdicts and "inconclusive (n = 2)" in strong_verdicts
    assert "Welch" not in strong_verdicts.split("Rule:", 1)[1].split("no claim.", 1)[1]  # no test was claimed
