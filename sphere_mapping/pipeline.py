"""The steps ./run.sh runs for sphere_mapping, in order (lab.pipeline adds --quick unless --full).

train: the article's 10^4 steps, its figures, animation and metrics; experiments: the article's
setup over 10 seeds against the variants that close the sphere, all seeds of a shape trained at
once. The benchmark (bench.py) is run by hand. CLAIMS: what the runs check, for the gallery
(full-profile figures: README).
"""

SCRIPTS = [
    ["train"],
    ["experiments"],
]

CLAIMS = [
    "the square wraps into a sphere with a missing corner (dropout off, the painted picture)",
    "the training batch (dropout on) forms a sphere",
    "most seeds of the article's setup wrap the square into a sphere with a missing corner",
    "a map from the square cannot be closed into a whole sphere (the author tried for a day)",
]
