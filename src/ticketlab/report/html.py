"""The study report: one self-contained HTML page, its Markdown twin, figures and the aggregated table.

Everything is read back from the run store (collect -> aggregate / overlap_table), never from memory, so a
report can be redrawn at any time from the folders alone. The page is built once as neutral blocks and
rendered twice (HTML with embedded PNGs, Markdown linking the PNG files), so the two always say the same.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path
from typing import Any

from .. import matching
from ..errors import TicketlabError
from ..store import read_config, store_part
from . import across_experiments, figures, stability
from .aggregate import METRICS, aggregate, collect, experiment_dirs, healthy
from .overlap import overlap_table

ALWAYS_SHOWN = {"lottery.rewind_step", "lottery.levels"}  # meaningful even at 0 (0 = reset to init / dense only)
CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
.note{background:#fff4c2;border:2px solid #e0a800;padding:.7em 1em;margin:1em 0;font-weight:600}
.bad{background:#fde2e2;border:2px solid #c00;padding:.5em 1em}.ok{color:#176117}
figure{margin:1.2em 0}img{max-width:100%}figcaption{font-size:13px;color:#444}"""
CAPTIONS = {
    "accuracy_vs_density": "Test accuracy at the early-stop iteration (minimum validation loss) against the share "
                           "of prunable weights remaining, for the ticket and every control. Points: mean over jobs "
                           "(replicates × control draws); error bars: {spread}. Dashed line and grey band: the dense "
                           "network (level 0). Points are nudged sideways so bars don't overlap; exact densities "
                           "are in the table.",
    "early_stop_vs_density": "Iteration of minimum validation loss (early stop) against weights remaining; "
                             "error bars: {spread}. Dashed line and band: the dense network.",
    "training_curves": "Test accuracy during training of the ticket at a few levels: mean over replicates, "
                       "band: {spread}.",
    "layer_density": "Share of each layer's weights the ticket keeps at every IMP level (log scale); dashed: "
                     "all prunable weights together.",
    "mask_overlap": "Intersection over union of masks: tickets of two replicates, a ticket and the next level's "
                    "ticket of the same replicate, a ticket and each control's mask. Dashed: the expected IoU of "
                    "two independent random masks of that density, pooled over layers (random masks with the "
                    "ticket's per-layer counts overlap more when layers are pruned at different rates). "
                    "Controls that keep the ticket's mask (reinit, sign_reinit, noise) have IoU 1 by "
                    "construction: left out of the figure, kept in the table below.",
}


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f}"


def verdict(matched: bool | None) -> str:
    """The aggregate's verdict (ticketlab.matching) as the report writes it."""
    return "n/a" if matched is None else ("*matching*" if matched else "not matching")


def _spread_cell(stat: dict[str, float | None], spread: str) -> str:
    if stat["mean"] is None:
        return "n/a"
    if spread == "std":
        return f"{pct(stat['mean'])} ± {pct(stat['std'])}"
    return f"{pct(stat['mean'])} [{pct(stat['min'])}, {pct(stat['max'])}]"


def _ordered(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(table, key=lambda e: (e["experiment"], e["level"], figures.variant_key(e["variant"])))


def flat_table(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The aggregated table as flat records: fractions as percent (full precision), steps as they are."""
    out = []
    for e in _ordered(table):
        rec = {"experiment": e["experiment"], "variant": e["variant"], "level": e["level"], "n": e["n"],
               "diverged": e.get("diverged", 0), "seeds": e["seeds"], "weights_remaining_pct": e["density"] * 100}
        for metric in METRICS:
            factor, name = (1, metric) if metric == "early_stop_step" else (100, f"{metric}_pct")
            for stat, v in e[metric].items():
                rec[f"{name}_{stat}"] = None if v is None else v * factor
        out.append({**rec, "matching": e["matching"]})
    return out


def _write_tables(records: list[dict[str, Any]], out: Path) -> tuple[Path, Path]:
    with open(out / "table.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(records[0]) if records else ["experiment", "variant", "level"])
        w.writeheader()
        for r in records:
            w.writerow({**r, "seeds": " ".join(map(str, r["seeds"])),
                        "matching": "" if r["matching"] is None else str(r["matching"]).lower()})
    (out / "table.json").write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    return out / "table.csv", out / "table.json"


def _notes(cfg: dict[str, Any]) -> list[str]:
    """`note` and `notes` at config.json's top level, each a string or a list of strings."""
    out = []
    for key in ("note", "notes"):
        value = cfg.get(key)
        out += [str(v) for v in (value if isinstance(value, list) else [value] if value else [])]
    return out


def _hparams(config: dict[str, Any]) -> list[tuple[str, str]]:
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


def _config_blocks(exp_dir: Path) -> list[tuple]:
    cfg = read_config(exp_dir)
    extra = {k: v for k, v in cfg.items() if k not in ("config", "hash", "provenance", "note", "notes")}
    rows = [("hash", str(cfg.get("hash")))] + _hparams(cfg.get("config", {}))
    rows += [(f"provenance.{k}", str(v)) for k, v in cfg.get("provenance", {}).items()]
    rows += [(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in extra.items()]
    return [("h3", "Configuration"), ("table", ["setting", "value"], rows)]


def _verdict_blocks(entries: list[dict[str, Any]], spread: str) -> list[tuple]:
    variants = sorted({e["variant"] for e in entries}, key=figures.variant_key)
    by = {(e["level"], e["variant"]): e for e in entries}
    rows = []
    for level in sorted({e["level"] for e in entries}):
        density = by.get((level, "ticket"), next(e for e in entries if e["level"] == level))["density"]
        cells = [f"{_spread_cell(by[(level, v)]['early_stop_test_accuracy'], spread)} "
                 f"(n={n_text(by[(level, v)], inline=True)}) {verdict(by[(level, v)]['matching'])}"
                 if (level, v) in by else "not run" for v in variants]
        rows.append([str(level), pct(density), *cells])
    spread_text = "[min, max]" if spread == "minmax" else "± std"
    detail = [[str(e["level"]), e["variant"], n_text(e), pct(e["density"]),
               *[pct(e["early_stop_test_accuracy"][s]) for s in ("mean", "min", "max", "std")],
               _step_cell(e["early_stop_step"]), pct(e["final_test_accuracy"]["mean"]), verdict(e["matching"])]
              for e in _ordered(entries)]
    return [("h3", "Results: test accuracy at early stop (%)"),
            ("p", f"Each cell: mean {spread_text} over jobs, number of jobs, and the verdict: *matching* when "
                  f"the mean is at least the dense mean minus the dense replicates' std (at least "
                  f"{100 * matching.TOLERANCE:g} pp)."),
            ("table", ["level", "% weights remaining", *variants], rows),
            ("h3", "All statistics"),
            ("table", ["level", "variant", "n", "% remaining", "acc. mean", "acc. min", "acc. max", "acc. std",
                       "early-stop step mean [min, max]", "final acc. mean", "verdict"], detail)]


def n_text(entry: dict[str, Any], inline: bool = False) -> str:
    """Jobs in the statistics, and those left out because they diverged: '2 (+1 diverged)'; inline (already
    in parentheses): '2, +1 diverged'."""
    extra = entry.get("diverged", 0)
    if not extra:
        return str(entry["n"])
    return f"{entry['n']}, +{extra} diverged" if inline else f"{entry['n']} (+{extra} diverged)"


def _step_cell(stat: dict[str, float | None]) -> str:
    return "n/a" if stat["mean"] is None else f"{stat['mean']:.0f} [{stat['min']:.0f}, {stat['max']:.0f}]"


def _diverged_blocks(rows: list[dict[str, Any]]) -> list[tuple]:
    """The jobs whose training diverged: listed, and left out of every mean, figure and overlap."""
    bad = [[str(r["seed"]), r["variant"], str(r["level"]), r["job_dir"], str(r["diverged_at_step"])]
           for r in rows if r.get("status") == "diverged"]
    if not bad:
        return []
    return [("h3", "Diverged jobs"),
            ("bad", f"{len(bad)} job(s) DIVERGED (a loss or the weights stopped being finite): they are left out of "
                    "every mean, verdict, figure and overlap above and below, and counted as '+k diverged'."),
            ("table", ["seed", "variant", "level", "folder", "diverged at step"], bad)]


def _check_blocks(rows: list[dict[str, Any]]) -> list[tuple]:
    bad = []
    for r in rows:
        problems = ([] if r["checks"]["counts_as_requested"] else ["counts differ from the request"]) + \
                   [f"layer {k} has no weight left" for k in r["checks"]["collapsed_layers"]]
        if problems:
            bad.append([str(r["seed"]), r["variant"], str(r["level"]), r["job_dir"], "; ".join(problems)])
    worst = max((max(r["checks"].get("pruned_max_abs", {}).values(), default=0.0) for r in rows), default=0.0)
    text = (f"{len(rows)} jobs. Largest |value| at a pruned position (weight, gradient, optimizer state) over all "
            f"jobs: {worst:g} (training stops if it is not exactly 0).")
    if not bad:
        return [("h3", "Self-checks"), ("ok", text + " Every job has the requested per-layer counts and no "
                                               "collapsed layer.")]
    return [("h3", "Self-checks"), ("p", text), ("bad", f"{len(bad)} job(s) FAILED a self-check:"),
            ("table", ["seed", "variant", "level", "folder", "problem"], bad)]


def _overlap_blocks(overlap: list[dict[str, Any]], entries: list[dict[str, Any]]) -> list[tuple]:
    density = {e["level"]: e["density"] for e in entries if e["variant"] == "ticket"}
    rows = []
    for o in overlap:
        d = density.get(o["level"])
        same = d is not None and "next level" not in o["comparison"]  # the random reference needs one density
        layers = ", ".join(f"{k} {v:.3f}" for k, v in o["iou"].items() if k != "_overall")
        rows.append([str(o["level"]), pct(d), o["comparison"], str(o["pairs"]), f"{o['iou']['_overall']:.3f}",
                     f"{figures.expected_random_iou(d):.3f}" if same else "", layers])
    return [("h3", "Mask overlap (IoU)"),
            ("table", ["level", "% remaining", "comparison", "pairs", "IoU", "random masks (expected)",
                       "IoU per layer"], rows)] if rows else []


def _figure_blocks(rows: list[dict[str, Any]], table: list[dict[str, Any]], overlap: list[dict[str, Any]],
                   out: Path, spread: str) -> dict[str, list[tuple]]:
    drawn = {"accuracy_vs_density": figures.accuracy_vs_density(table, out, spread),
             "early_stop_vs_density": figures.early_stop_vs_density(table, out, spread),
             "training_curves": figures.training_curves(rows, out, spread),
             "layer_density": figures.layer_density(rows, out),
             "mask_overlap": figures.mask_overlap(overlap, table, out)}
    spread_text = "min to max" if spread == "minmax" else "mean ± 1 std"
    blocks: dict[str, list[tuple]] = {}
    for name, per_exp in drawn.items():
        for exp, d in per_exp.items():
            blocks.setdefault(exp, []).append(("figure", d, CAPTIONS[name].format(spread=spread_text)))
    return blocks


def _stability_blocks(exp_dir: Path, out: Path, files: dict[str, Path]) -> list[tuple]:
    results = stability.stability_results(exp_dir)
    if not results:
        return []
    head, rows = stability.table_rows(results)
    drawn = [stability.path_figure(results, out, exp_dir.name), stability.barrier_figure(results, out, exp_dir.name)]
    for d in drawn:
        files.update({p.name: p for p in d})
    return [("h3", "Instability analysis (linear mode connectivity)"),
            ("p", "Two copies trained from the state at step k with different data orders; the barrier is the largest "
                  "error on the straight line between their final weights minus the mean error of the two ends."),
            ("table", head, rows),
            ("figure", drawn[0], "Test error along the interpolation path between the two copies."),
            ("figure", drawn[1], "Test error barrier vs the step k where the copies split; below the dashed line "
                                 "the state is stable to SGD noise.")]


def check_report_dir(out: Path) -> None:
    """A report folder is a folder (or a path to make one) outside the run store: one line otherwise."""
    if out.exists() and not out.is_dir():
        raise TicketlabError(f"cannot write the report into {out}: it is a file, not a folder")
    part = store_part(out)
    if part is not None:
        raise TicketlabError(f"will not write the report into {out}: it is inside the run store ({part}), which "
                             "reports only read; choose an --out folder outside it")


def write_report(paths: list[str | Path], out_dir: str | Path, spread: str = "minmax",
                 title: str | None = None, unread: list[str] | None = None) -> dict[str, Path]:
    """Figures, table.csv/json, report.html (self-contained) and report.md for the runs in `paths`, in the folder
    `out_dir`, which must lie outside the run store (reports only read it). A level or control that could not
    be read (damaged, unfinished, a broken link) is named at the top of the report and appended to `unread`."""
    if spread not in figures.SPREADS:
        raise TicketlabError(f"unknown spread {spread!r}; choose one of: {', '.join(figures.SPREADS)}")
    check_report_dir(Path(out_dir))
    exp_dirs = {d.name: d for d, _ in experiment_dirs(paths)}
    missing: list[str] = []
    every_row = collect(paths, allow_empty=True, unread=missing)  # an experiment may hold only stability analyses
    if unread is not None:
        unread += missing
    rows = healthy(every_row)  # diverged jobs: counted in the table and listed, never plotted or averaged
    if not every_row and not any(stability.stability_results(d) for d in exp_dirs.values()):
        raise TicketlabError(f"no finished jobs found in {', '.join(str(p) for p in paths)}")
    table, overlap = aggregate(every_row), overlap_table(rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = dict(zip(("csv", "json"), _write_tables(flat_table(table), out)))
    fig_blocks = _figure_blocks(rows, table, overlap, out, spread)
    title = title or f"Lottery-ticket report: {', '.join(exp_dirs)}"
    blocks: list[tuple] = [("h1", title)]
    if missing:  # before any number: the tables below leave these out
        blocks += [("bad", f"Not in this report ({len(missing)} job(s) could not be read): {line}") for line in missing]
    for name, d in exp_dirs.items():  # notes first: a reader must see e.g. 'quick budget' before any number
        blocks += [("note", f"Note ({name}): {n}") for n in _notes(read_config(d))]
    for name, d in exp_dirs.items():
        entries = [e for e in table if e["experiment"] == name]
        stable = _stability_blocks(d, out, files)
        if not entries and not stable:
            continue
        blocks += [("h2", f"Experiment {name}"), ("p", f"Folder: {d}")] + _config_blocks(d)
        if entries:  # an experiment may hold only stability analyses
            mine = [r for r in every_row if r["experiment"] == name]
            blocks += _verdict_blocks(entries, spread) + _diverged_blocks(mine) + _check_blocks(mine)
            blocks += [("h3", "Figures")] + fig_blocks.get(name, [])
            blocks += _overlap_blocks([o for o in overlap if o["experiment"] == name], entries)
        blocks += stable
    compared = across_experiments.accuracy_by_experiment(table, exp_dirs, out, spread)
    if compared is not None:
        files.update({p.name: p for p in compared})
        blocks += [("h2", "Experiments compared"),
                   ("figure", compared, "Test accuracy at early stop of each experiment's tickets vs weights "
                    "remaining; experiments are labelled by the hyper-parameters that differ between them: "
                    + "; ".join(f"{n}: {lab}" for n, lab in across_experiments.labels(exp_dirs).items()) + ".")]
    (out / "report.html").write_text(render_html(blocks, title), encoding="utf-8")
    (out / "report.md").write_text(render_md(blocks), encoding="utf-8")
    files = {"html": out / "report.html", "md": out / "report.md", **files}
    for per_exp in fig_blocks.values():
        files.update({p.name: p for _, d, _ in per_exp for p in d})
    return files


def _e(text: str) -> str:
    """Escaped text, with the verdict's Markdown emphasis turned into HTML's."""
    return html.escape(str(text)).replace("*matching*", "<em>matching</em>")


def render_html(blocks: list[tuple], title: str) -> str:
    e = _e  # every piece of text goes through html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
             f"<style>{CSS}</style></head><body>"]
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3", "p"):
            parts.append(f"<{kind}>{e(args[0])}</{kind}>")
        elif kind in ("note", "ok", "bad"):
            parts.append(f"<div class='{kind}'>{e(args[0])}</div>")
        elif kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in args[0])
            body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in args[1])
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "figure":
            data = base64.b64encode(args[0].png.read_bytes()).decode()
            parts.append(f"<figure><img alt='{e(args[0].png.stem)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{e(args[1])}</figcaption></figure>")
    return "\n".join(parts) + "\n</body></html>\n"


def md_text(text: str) -> str:
    """One line, and no raw HTML (a note saying '<b>' must show, not render)."""
    return " ".join(str(text).split()).replace("<", "&lt;")


def render_md(blocks: list[tuple]) -> str:
    cell = lambda s: md_text(s).replace("|", "\\|")  # noqa: E731
    parts = []
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append(f"{'#' * int(kind[1])} {args[0]}")
        elif kind in ("p", "ok"):
            parts.append(md_text(args[0]))
        elif kind in ("note", "bad"):
            parts.append(f"> **{md_text(args[0])}**")
        elif kind == "table":
            lines = ["| " + " | ".join(cell(h) for h in args[0]) + " |", "|" + "---|" * len(args[0])]
            parts.append("\n".join(lines + ["| " + " | ".join(cell(c) for c in r) + " |" for r in args[1]]))
        elif kind == "figure":
            parts.append(f"![{args[0].png.stem}]({args[0].png.name})\n\n*{args[1]}*")
    return "\n\n".join(parts) + "\n"
