"""The steps ./run.sh runs for beauty_predictor, in order (lab.pipeline appends --quick unless --full);
CLAIMS: what the runs check, with the full profile's figures, for the gallery."""

from beauty_predictor.claims import FULL_PROFILE

SCRIPTS = [
    ["export_photos"],
    ["train_predictor"],
    ["train_improver", "--set", "VARIANT=article"],   # the article's plain improver: "looks like smoothing"
    ["train_improver", "--set", "VARIANT=residual"],  # the identity-start improver, for comparison
    ["train_improver", "--set", "VARIANT=contrast"],  # the article's second experiment
    ["sweep"],                                        # the frontier over K2/K1
    ["recursive"],                                    # 50 applications: the black square
    ["bench"],
]

CLAIMS = list(FULL_PROFILE.items())
QUICK_SECONDS = 655  # its wall time on 2 cores, beside another (lab.pipeline.start_order)
