"""A conditional GAN on digits: ask for a digit, get that digit. Run: python -m gan_basics.cgan [--quick]

Article 004 ("Co přidat další rozměr do vstupů, třeba s Conditional GAN"; Mirza & Osindero 2014).
This is `python -m gan_basics.gan --set CONDITIONAL=true` (gan.py's constants; a later --set wins).
The judge's agreement with the digit asked for is the label accuracy (chance: 10 %); outputs in
outputs/gan_basics/cgan/, with one row per digit 0-9 in the grids and accuracy_per_digit.png.
"""

from __future__ import annotations

import sys

from gan_basics import gan


def main(argv: list[str] | None = None):
    return gan.main(["--set", "CONDITIONAL=true", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
