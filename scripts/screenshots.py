"""Render every report kind from a small run and take a screenshot of each page in headless Chromium.

    .venv/bin/python scripts/screenshots.py [--out docs/report-screenshots] [--work DIR] [--keep]

A script, not a test: it looks at the pages as a user sees them (fonts, tables, figures in a real browser).
Each kind's run is made by the `ticketlab` command itself, run as a process, so every page shows the command
that made it. The runs are small (the synthetic data set; a planted ReLU network for seek) and take about a
minute on two CPU cores. Chromium: the Debian package `chromium` (`apt-get install -y chromium`).

Writes <out>/<kind>.png for lottery, compare, strong, seek and sweep: the top of each page, 1280 px wide, up
to --height px tall (blank space at the bottom cut off).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--dataset", "synthetic", "--val-size", "500", "--model", "mlp_32_16", "--train-steps", "60",
         "--eval-every", "30", "--batch-size", "32", "--workers", "1", "--quiet"]


def ticketlab(*args: str, cwd: Path) -> None:
    """One `ticketlab` command as a user types it (python -m ticketlab.cli), stopping on failure."""
    done = subprocess.run([sys.executable, "-m", "ticketlab.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    if done.returncode != 0:
        raise SystemExit(f"ticketlab {' '.join(args)} failed:\n{done.stderr}")


def render_all(work: Path) -> dict[str, Path]:
    """Every report kind from a small run stored under work/runs; {kind: its report.html}."""
    runs, reports = work / "runs", work / "reports"
    ticketlab("lottery", *SMALL, "--levels", "3", "--replicates", "2", "--controls", "reinit,random_prune",
              "--out", str(runs), cwd=work)
    [experiment] = glob.glob(str(runs / "lottery_*"))
    ticketlab("report", experiment, "--out", str(reports / "lottery"), cwd=work)
    ticketlab("compare", *SMALL, "--methods", "imp,snip,random", "--densities", "0.2,0.05", "--prune-rate", "0.5",
              "--checks", "reinit,shuffle", "--replicates", "3", "--out", str(runs),
              "--report-dir", str(reports / "compare"), cwd=work)
    ticketlab("strong", *SMALL, "--k", "0.3,0.5,0.7", "--replicates", "3", "--out", str(runs),
              "--report-dir", str(reports / "strong"), cwd=work)
    ticketlab("seek", "--task", "relu", "--methods", "imp,random,edge-popup", "--densities", "0.2,0.05",
              "--replicates", "3", "--train-steps", "40", "--eval-every", "20", "--workers", "1", "--quiet",
              "--out", str(runs), "--report-dir", str(reports / "seek"), cwd=work)
    ticketlab("sweep", *SMALL, "--subsample", "600", "--over", "model.width=0.25,0.5,1,2", "--replicates", "2",
              "--out", str(runs), "--report-dir", str(reports / "sweep"), cwd=work)
    return {kind: reports / kind / "report.html" for kind in ("lottery", "compare", "strong", "seek", "sweep")}


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise SystemExit("no Chromium found: apt-get install -y chromium")


def screenshot(browser: str, page: Path, png: Path, width: int, height: int) -> None:
    """The page opened from disk (file://, no server) in headless Chromium; the blank bottom cut off."""
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={width},{height}", f"--screenshot={png}", page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = Image.open(png).convert("RGB")
    box = ImageChops.difference(image, Image.new("RGB", image.size, "white")).getbbox()
    if box is not None:
        image.crop((0, 0, width, min(height, box[3] + 24))).save(png, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "report-screenshots"), help="folder of the PNGs")
    parser.add_argument("--work", help="folder for the runs and reports (default: a temporary one, removed)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=3000, help="the most of each page shown (px)")
    args = parser.parse_args()
    browser = chromium()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="ticketlab-pages-"))
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        for kind, page in render_all(work).items():
            screenshot(browser, page, out / f"{kind}.png", args.width, args.height)
            print(f"{kind}: {page} -> {out / f'{kind}.png'}")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
