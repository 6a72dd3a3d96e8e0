"""Export the photos bundled with scikit-image and scikit-learn into data/photos/. Run: python -m beauty_predictor.export_photos

Copied byte for byte (licences in data/README.md), not committed: the pipeline's first step makes them in a
second. Point PHOTOS_DIR (in any script) at your own folder to use your photos instead.
"""

from __future__ import annotations

from pathlib import Path

from beauty_predictor.common import EXPERIMENT
from beauty_predictor.photos import export_bundled_photos, load_photos
from lab import LabError, exit_on_lab_error, start_run

# -----------------------------------------------------------------------------
# Constants.
TARGET_DIR = "data/photos"  # where the bundled photos are copied (relative to the repository root) {nonempty}
QUICK = {}
# -----------------------------------------------------------------------------


@exit_on_lab_error
def main(argv=None):
    run = start_run(EXPERIMENT, globals(), argv)
    from lab.paths import REPO_ROOT

    target = Path(run.cfg.TARGET_DIR)
    target = target if target.is_absolute() else REPO_ROOT / target
    if target.resolve() == REPO_ROOT.resolve():  # e.g. --set TARGET_DIR=. : photos among the sources
        raise LabError(f"TARGET_DIR {run.cfg.TARGET_DIR!r} is the repository root; name a folder for the "
                       "photos, e.g. --set TARGET_DIR=data/photos")
    written = export_bundled_photos(target)
    photos = load_photos(target, max_side=10_000)
    sizes = {p.name: f"{p.pixels.shape[1]}x{p.pixels.shape[0]}" for p in photos}
    for name, size in sizes.items():
        print(f"  {name:<20} {size}")
    run.finish({"photos": len(written), "sizes": sizes})


if __name__ == "__main__":
    main()
