"""The HTML report opens in a real browser and its plots load (headless Chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from faceledger.engine import Engine
from faceledger.eval.cache import EmbeddingCache
from faceledger.eval.dataset import read_labels
from faceledger.eval.report import ReportOptions, build_report
from faceledger.eval.report_html import write_report

pytestmark = pytest.mark.integration

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "embeddings"
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter((im) => im.complete && im.naturalWidth > 0).length;
  const out = document.createElement("div");
  out.id = "probe";
  out.textContent = `images=${images.length} loaded=${loaded}`;
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


def test_report_plots_load_in_headless_chromium(
    faces_dir: Path, engine: Engine, tmp_path: Path
) -> None:
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed")
    cache = EmbeddingCache(CACHE, engine.model_id)
    labels = read_labels(faces_dir / "glint360k_celeb24" / "meta" / "gender_distribution.json")
    report = build_report(
        engine,
        [faces_dir / "glint360k_celeb24" / "images"],
        labels=labels,
        options=ReportOptions(aligned=True, per_person=20, bootstrap=200),
        cache=cache,
    )
    cache.close()
    page = tmp_path / "report.html"
    write_report(report, html_out=page)
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html and 'src="http' not in html  # self-contained
    probed = tmp_path / "probed.html"  # the report plus a script that counts loaded images
    probed.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    profile = tmp_path / "profile"
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    match = re.search(r'id="probe">images=(\d+) loaded=(\d+)<', result.stdout)
    assert match, f"no probe in the DOM (exit {result.returncode}): {result.stderr[-2000:]}"
    images, loaded = int(match.group(1)), int(match.group(2))
    assert images == 5 and loaded == images
