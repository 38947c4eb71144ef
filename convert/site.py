"""Copy the built static page (``web/dist``) into a bundle's ``web/`` folder."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO_DIST = Path(__file__).resolve().parent.parent / "web" / "dist"
PACKAGED_DIST = Path(__file__).resolve().parent / "web_dist"
BUILD_HINT = "run `npm --prefix web ci && npm --prefix web run build` (the README's set-up does)"


def site_source() -> Path | None:
    """The built site: the package's copy, else the repository's ``web/dist``; None when not built."""
    for candidate in (PACKAGED_DIST, REPO_DIST):
        if (candidate / "index.html").is_file():
            return candidate
    return None


def copy_site(web_dir: Path) -> str | None:
    """Copy the site into ``web_dir`` (beside ``model/``). Returns a note when the site is not built."""
    source = site_source()
    if source is None:
        return f"web page not built, so BUNDLE/web has only the model; {BUILD_HINT}"
    web_dir.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name in ("model", "manifest.json", "golden.json"):
            continue
        target = web_dir / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(item, target)
    return None
