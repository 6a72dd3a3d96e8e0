"""The steps ./run.sh runs for sphere_mapping, in order (lab.pipeline adds --quick unless --full).

train: the article's map, its figures, animation and metrics; experiments: the article's setup
over seeds against the variants that close the sphere. The benchmark (bench.py) is run by hand.
"""

SCRIPTS = [
    ["train"],
    ["experiments"],
]
