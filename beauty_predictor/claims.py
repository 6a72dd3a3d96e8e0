"""The article's claims (and its readers') that the scripts check (run.add_claim), with the full profile's figures.

pipeline.CLAIMS lists them all, so the gallery shows one no run recorded as "not run" (README.md: the figures).
"""

PREDICTOR_BEATS_BORDER = ("a network predicts a 32x32 centre from its 128x128 surroundings (article), "
                          "better than the hole border's mean colour")
PREDICTOR_BEATS_BIHARMONIC = ("the centre predictor beats biharmonic inpainting on the same held-out crops "
                              "(beyond the article)")
SMOOTHING = "the improver's result looks like smoothing (article: \"Похоже на сглаживание\")"
MORE_PREDICTABLE = "the article's improver makes the photos more predictable: MAE(Y,Z_Y) below MAE(X,Z_X)"
CONTRAST = ("maximising MAE(Y,Z_bad)/MAE(Y,Z_good) (article's second experiment) raises that ratio, "
            "with no X term to keep the photo")
BLACK_SQUARE = "applying the improver again and again ends in a black square (the article's readers)"
REBUILD_BLACK_SQUARE = ("iterating the rebuild itself, Y <- Z(Y), ends in a black square for most centre predictors "
                        "(beyond the article)")
BEATS_BLUR = ("a trained improver does more than blur: MAE(Y,Z) at least 10 % below the blur of equal "
              "MAE(X,Y) (beyond the article)")

# "" where the full run was not made.
FULL_PROFILE = {
    PREDICTOR_BEATS_BORDER: "held-out MAE 0.0777 vs border mean 0.1097 (6000 steps)",
    PREDICTOR_BEATS_BIHARMONIC: "0.0777 vs biharmonic 0.0783 (6000 steps)",
    SMOOTHING: ("keeps 22 % of the HF energy, best blur sigma 0.75 px (MAE 0.0285 < 0.0349), coarse correlation 0.989, "
                "std kept 93 %: reproduced (1500 steps)"),
    MORE_PREDICTABLE: "MAE(Y,Z_Y) 0.0544 vs MAE(X,Z_X) 0.0708 (+23.2 %) at MAE(X,Y) 0.0349 (1500 steps)",
    CONTRAST: "",
    BLACK_SQUARE: "no: still changing at n = 50, pale flat-ish fields, brightness 0.46 -> 0.74",
    REBUILD_BLACK_SQUARE: "one predictor (6000 steps): still changing at n = 50, brightness 0.46 -> 0.36, not flat",
    BEATS_BLUR: "",
}
