"""Side-by-side benchmark of the memory an image upload takes to decode and resize, in one run.

Each case (a 4800x4800 all-black picture: RGB, RGBA, palette and 16-bit gray PNG, baseline, progressive 4:2:0
and 4:4:4 JPEG; under 1 MiB each and at the 24-megapixel limit) is given to ``edge.images.load`` for a 224x224
RGB input in a fresh subprocess, once with this tree's ``edge/images.py`` and once with the one to compare
(``git show REF:edge/images.py``, REF ``HEAD`` unless ``--before REF``), in turns. Reported: the peak resident
set (``VmHWM``) the call adds over the process's own peak before it (a small picture is loaded first, so
imports and first-use costs are outside), in MiB, and after / before as a ratio; a refusal (413) is shown as
such. edge/deploykit-edge.service caps the unit at MemoryMax=256M, and the server itself holds ~67 MB.

    python bench/image_memory.py [--before REF] [--size 224] [--json test-artifacts/image_memory.json]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDE = 4800

CHILD = r"""
import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
spec_ = importlib.util.spec_from_file_location("images_under_test", sys.argv[2])
m = importlib.util.module_from_spec(spec_); sys.modules[spec_.name] = m; spec_.loader.exec_module(m)
from edge.inputs import InputError
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
spec = m.ImageInput("x", int(sys.argv[4]), int(sys.argv[4]), 3, (0.0, 1.0))
m.load(open(sys.argv[5], "rb").read(), spec)
data = open(sys.argv[3], "rb").read()
before = hwm()
try:
    m.load(data, spec, True)
    out = {"added": hwm() - before}
except InputError as exc:
    out = {"added": hwm() - before, "refused": exc.status}
print(json.dumps(out))
"""


def pictures(work: Path) -> dict[str, Path]:
    from PIL import Image

    made = {}
    cases = {"png_rgb": (Image.new("RGB", (SIDE, SIDE)), "PNG", {"optimize": True}),
             "png_rgba": (Image.new("RGBA", (SIDE, SIDE)), "PNG", {"optimize": True}),
             "png_palette": (Image.new("P", (SIDE, SIDE)), "PNG", {"optimize": True}),
             "png_gray16": (Image.new("I;16", (SIDE, SIDE)), "PNG", {}),
             "jpeg_baseline": (Image.new("RGB", (SIDE, SIDE)), "JPEG", {}),
             "jpeg_progressive": (Image.new("RGB", (SIDE, SIDE)), "JPEG", {"progressive": True}),
             "jpeg_progressive_444": (Image.new("RGB", (SIDE, SIDE)), "JPEG", {"progressive": True, "subsampling": 0}),
             "small": (Image.new("RGB", (8, 8)), "PNG", {})}
    for name, (im, fmt, options) in cases.items():
        buf = io.BytesIO()
        im.save(buf, fmt, **options)
        made[name] = work / f"{name}.bin"
        made[name].write_bytes(buf.getvalue())
    return made


def measure(module: Path, picture: Path, small: Path, size: int) -> dict:
    run = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(module), str(picture), str(size), str(small)],
                         capture_output=True, text=True, check=True)
    return json.loads(run.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="HEAD", help="the git revision whose edge/images.py is compared")
    parser.add_argument("--size", type=int, default=224, help="the model input's height and width")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        old = work / "images_before.py"
        old.write_text(subprocess.run(["git", "-C", str(ROOT), "show", f"{args.before}:edge/images.py"],
                                      capture_output=True, text=True, check=True).stdout)
        files = pictures(work)
        small = files.pop("small")
        rows = {}
        print(f"{'4800x4800 picture':<22}{'bytes':>9}{'before MiB':>12}{'after MiB':>11}{'after/before':>14}")
        for name, path in files.items():
            before = measure(old, path, small, args.size)
            after = measure(ROOT / "edge" / "images.py", path, small, args.size)
            rows[name] = {"bytes": path.stat().st_size, "before": before, "after": after,
                          "ratio": after["added"] / before["added"]}

            def show(r: dict) -> str:
                return f"{r['added'] / 2**20:.0f}" + (f" ({r['refused']})" if "refused" in r else "")

            print(f"{name:<22}{path.stat().st_size:>9}{show(before):>12}{show(after):>11}{rows[name]['ratio']:>14.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"size": args.size, "cases": rows}, indent=2))


if __name__ == "__main__":
    main()
