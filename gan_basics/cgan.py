"""A conditional GAN on digits: ask for a digit, get that digit. Run: python -m gan_basics.cgan [--quick]

Article 004 ("Co přidat další rozměr do vstupů, třeba s Conditional GAN"): a plain GAN gives no
control over what comes out; mixing a category into the inputs of both players (Mirza & Osindero
2014) lets one ask for a particular kind of image. Here the category is the digit: the generator
gets a one-hot label beside its noise, the discriminator one constant plane per class beside the
image, so it can reject a well-drawn digit of the wrong class.

This entry is `python -m gan_basics.gan --set CONDITIONAL=true`: the conditional GAN is the GAN
with one setting changed, so its constants are gan.py's (edit them there) and this file owns none.
It starts gan.py as a program, passing every argument on (--quick, --set, --fresh, --help).

The judge (evaluator.py, a classifier trained only on real digits) reads every conditional sample;
its agreement with the digit asked for is the label accuracy, reported per digit and overall
(chance: 10 %). Outputs (outputs/gan_basics/cgan/): grids with one row per digit 0-9 each epoch
(samples/epoch_0001.png ...), their GIF, best.png, samples_best.npy with samples_best_labels.npy,
accuracy_per_digit.png, frechet.png, losses.png, run.json.
"""

from __future__ import annotations

import signal
import subprocess
import sys


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = [sys.executable, "-m", "gan_basics.gan", "--set", "CONDITIONAL=true", *argv]
    process = subprocess.Popen(command)
    # SIGTERM (timeout, a cluster's preemption) is passed on: gan.py saves, stops and exits with 143.
    signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signal.SIGTERM))
    while True:
        try:
            code = process.wait()
            break
        except KeyboardInterrupt:  # Ctrl+C reaches gan.py too, which saves and stops on its own
            continue
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
