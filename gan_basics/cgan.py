"""A conditional GAN on digits: ask for a digit, get that digit. Run: python -m gan_basics.cgan [--quick]

Article 004 ("Co přidat další rozměr do vstupů, třeba s Conditional GAN"): mixing a category into
both players' inputs (Mirza & Osindero 2014) lets one ask for a kind of image, here a digit. The
judge's agreement with the digit asked for is the label accuracy (chance: 10 %).

This is `python -m gan_basics.gan --set CONDITIONAL=true` (its constants are gan.py's; a later --set
still wins). Outputs in outputs/gan_basics/cgan/: gan.py's, with one row per digit 0-9 in the grids,
samples_best_labels.npy and accuracy_per_digit.png.
"""

from __future__ import annotations

import sys

from gan_basics import gan


def main(argv: list[str] | None = None):
    argv = sys.argv[1:] if argv is None else list(argv)
    return gan.main(["--set", "CONDITIONAL=true", *argv])


if __name__ == "__main__":
    main()
