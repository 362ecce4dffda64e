"""Keep the committed copy of the paper's figures (docs/figures/) small.

`make docs-figures` runs `python scripts/reproduce.py --all --out docs/figures`, then

    python docs/hooks/keep_figures.py docs/figures

which deletes everything but the PNGs and REPORT.md (the PDFs and report.json stay in
figures/, which git ignores) and re-encodes each PNG with a 256-colour palette: plots have
few colours, so the files are about 3 times smaller and look the same.
"""

from __future__ import annotations

import os
import sys

from PIL import Image


def keep(folder: str) -> None:
    before = after = 0
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name == "REPORT.md":
            continue
        if not name.endswith(".png"):
            os.remove(path)
            continue
        before += os.path.getsize(path)
        with Image.open(path) as im:
            small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        tmp = path + ".tmp"
        small.save(tmp, format="PNG", optimize=True)
        os.replace(tmp, path)  # atomic: an interrupt leaves the old file
        after += os.path.getsize(path)
    print(f"{folder}: PNGs {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB; kept the PNGs and REPORT.md")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: python docs/hooks/keep_figures.py FOLDER")
    keep(sys.argv[1])
