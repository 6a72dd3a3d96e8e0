"""The steps ./run.sh runs for vqgan_clip (lab.pipeline appends --quick unless --full): generate and
evaluate with the shipped small models (retraining them is its own command, see README.md).
CLAIMS: what the runs check (claims.py), with the full profile's figures, for the gallery.
"""

from vqgan_clip.claims import FULL_PROFILE

SCRIPTS = [["generate"], ["evaluate"]]
CLAIMS = list(FULL_PROFILE.items())
QUICK_SECONDS = 176  # its wall time on 2 cores, beside another (lab.pipeline.start_order)
