"""The steps ./run.sh runs for sphere_mapping, in order (lab.pipeline adds --quick unless --full).

train: the article's 10^4 steps on 32 seeds at once (one stacked model), the share of seeds that
draw each shape, and every figure of the seed a stated rule picks (the median of those that drew
the missing corner), with all 32 seeds side by side; experiments: the variants that close the
sphere over 10 seeds (the quick profile: the best one at 10^4 steps). The benchmark (bench.py) is
run by hand. CLAIMS: what the runs check, for the gallery (full-profile figures: README).
"""

SCRIPTS = [
    ["train"],
    ["experiments"],
]

CLAIMS = [
    "the square wraps into a sphere with a missing corner (dropout off, the painted picture)",
    "the training batch (dropout on) forms a sphere",
    "most of the article's seeds draw the sphere with a missing corner, the rest fold into ribbons",
    "a map from the square cannot be closed into a whole sphere (the author tried for a day)",
]
QUICK_SECONDS = 225  # its wall time on 2 cores, beside another (lab.pipeline.start_order)
