"""The steps ./run.sh runs for beauty_predictor, in order (lab.pipeline appends --quick unless --full)."""

SCRIPTS = [
    ["export_photos"],
    ["train_predictor"],
    ["train_improver", "--set", "VARIANT=article"],
    ["train_improver", "--set", "VARIANT=contrast"],
    ["train_improver", "--set", "VARIANT=deep"],
    ["sweep"],
    ["recursive"],
    ["bench"],
]
