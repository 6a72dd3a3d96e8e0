"""The steps ./run.sh runs for vqgan_clip (lab.pipeline appends --quick unless --full).

Neither profile retrains: both generate with the shipped small models in data/vqgan_clip_small/
and measure 20 prompts (the full profile with more iterations and cutouts). Retraining the small
models is its own command (see vqgan_clip/README.md): python -m vqgan_clip.train_clip and
python -m vqgan_clip.train_vqgan, about 15 minutes each on 2 shared CPU cores. CLAIMS: what the
runs check (vqgan_clip/claims.py), with the full profile's figures, for the gallery.
"""

from vqgan_clip.claims import FULL_PROFILE

SCRIPTS = [["generate"], ["evaluate"]]
CLAIMS = list(FULL_PROFILE.items())
