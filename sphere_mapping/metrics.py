"""How much of the sphere the square's map (an (n, 3) array of unit vectors) covers, and how evenly.

- coverage: the fraction of 2000 Fibonacci-lattice cells (Gonzalez 2010) with a mapped point
  within 5 degrees.
- uniformity: log E[exp(-2 |u - v|^2)] over distinct pairs (Wang & Isola 2020); lower is more
  uniform. The uniform sphere scores log((1 - e^-8) / 8) = -2.0797 (cos of the angle between two
  points is uniform on [-1, 1], by Archimedes); a collapsed map 0.
- largest hole: the angular radius of the largest empty spherical cap (the article's "missing
  corner"). A maximal empty cap touches three points, so it is cut off by a facet n.x = d of the
  points' convex hull: radius arccos(d), wider than 90 degrees when d < 0.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import ConvexHull, QhullError, cKDTree
from scipy.stats import binomtest

COVERAGE_CELLS = 2000
COVERAGE_RADIUS_DEG = 5.0
UNIFORMITY_TEMPERATURE = 2.0
UNIFORM_SPHERE_UNIFORMITY = math.log((1.0 - math.exp(-4.0 * UNIFORMITY_TEMPERATURE)) / (4.0 * UNIFORMITY_TEMPERATURE))


def fibonacci_sphere(count: int) -> np.ndarray:
    """The spherical Fibonacci lattice: z = 1 - (2i + 1) / count, longitude i times the golden angle."""
    index = np.arange(count, dtype=np.float64)
    z = 1.0 - (2.0 * index + 1.0) / count
    radius = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    longitude = index * math.pi * (3.0 - math.sqrt(5.0))
    return np.stack([radius * np.cos(longitude), radius * np.sin(longitude), z], axis=1)


def _as_unit_vectors(points) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 3 or len(array) == 0:
        raise ValueError(f"expected an (n, 3) array of unit vectors, got shape {array.shape}")
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def _chord(angle_deg: float) -> float:
    # Two unit vectors an angle a apart are 2 sin(a / 2) apart in space.
    return 2.0 * math.sin(math.radians(angle_deg) / 2.0)


def coverage(points, cells: int = COVERAGE_CELLS, radius_deg: float = COVERAGE_RADIUS_DEG) -> float:
    """Fraction of `cells` Fibonacci-lattice cells with a mapped point within `radius_deg`."""
    tree = cKDTree(_as_unit_vectors(points))
    distances, _ = tree.query(fibonacci_sphere(cells), k=1)
    return float(np.mean(distances <= _chord(radius_deg)))


def uniformity(points, temperature: float = UNIFORMITY_TEMPERATURE, max_points: int = 4000, seed: int = 0) -> float:
    """log E[exp(-t |u - v|^2)] over distinct pairs; a fixed subsample of `max_points` (enough for three decimals)."""
    import torch  # its exp is ~10x faster than NumPy's on 16 million pairs

    array = _as_unit_vectors(points)
    if len(array) > max_points:
        array = array[np.random.default_rng(seed).choice(len(array), max_points, replace=False)]
    count = len(array)
    if count < 2:
        return 0.0
    vectors = torch.from_numpy(array)
    total = 0.0
    for start in range(0, count, 1000):  # blocks of rows keep memory small
        squared = (2.0 - 2.0 * vectors[start : start + 1000] @ vectors.T).clamp_(min=0.0)
        total += float(squared.mul_(-temperature).exp_().sum())
    total -= count  # the diagonal: each point with itself, |u - u|^2 = 0
    return float(math.log(max(total, 1e-300) / (count * (count - 1))))


def largest_hole(points) -> tuple[float, np.ndarray]:
    """The largest spherical cap containing no point: (angular radius in degrees, unit centre)."""
    array = np.unique(np.round(_as_unit_vectors(points), 12), axis=0)
    if len(array) >= 4:
        try:
            hull = ConvexHull(array)
        except QhullError:  # all points on one plane (a circle): no 3D hull
            hull = None
        if hull is not None:
            # hull.equations rows are (n, -d) with n the outward unit normal: n.x - d <= 0 inside.
            offsets = -hull.equations[:, 3]
            widest = int(np.argmin(offsets))
            radius = float(np.degrees(np.arccos(np.clip(offsets[widest], -1.0, 1.0))))
            return radius, hull.equations[widest, :3].copy()
    # Degenerate sets (fewer than 4 distinct points, or coplanar ones): search cap centres on a
    # fine lattice, which is exact to within the lattice's spacing (~0.8 degrees).
    centres = fibonacci_sphere(60_000)
    distances, _ = cKDTree(array).query(centres, k=1)
    widest = int(np.argmax(distances))
    return float(np.degrees(2.0 * np.arcsin(np.clip(distances[widest] / 2.0, 0.0, 1.0)))), centres[widest]


def largest_hole_deg(points) -> float:
    """Angular radius in degrees of the largest spherical cap containing no point."""
    return largest_hole(points)[0]


BORDER_BAND = 0.05  # a square point is "on the border" within this distance of its edge (19% of the area)


def hole_rim(square_points, vectors, margin_deg: float = 1.0, hole: tuple[float, np.ndarray] | None = None) -> dict:
    """Where the largest hole sits in the square: the points whose images lie within `margin_deg`
    of the empty cap's edge. If the hole is the square's unclosed border seam, its rim comes from
    the border band far more often than its area gives. `hole`: largest_hole(vectors), if known."""
    square_points = np.asarray(square_points, dtype=np.float64)
    radius, centre = largest_hole(vectors) if hole is None else hole
    angles = np.degrees(np.arccos(np.clip(_as_unit_vectors(vectors) @ centre, -1.0, 1.0)))
    rim = angles <= radius + margin_deg
    on_border = np.abs(square_points).max(axis=1) >= 0.5 - BORDER_BAND
    corner = (np.abs(square_points) >= 0.5 - 2 * BORDER_BAND).all(axis=1)
    rim_xy = square_points[rim]
    return {"hole_deg": radius, "rim_points": int(rim.sum()),
            "rim_on_border": float(on_border[rim].mean()) if rim.any() else float("nan"),
            "border_area": float(on_border.mean()),
            "rim_at_corners": float(corner[rim].mean()) if rim.any() else float("nan"),
            "corner_area": float(corner.mean()),
            "rim_mean_x": float(rim_xy[:, 0].mean()) if rim.any() else float("nan"),
            "rim_mean_y": float(rim_xy[:, 1].mean()) if rim.any() else float("nan"),
            "rim_mask": rim}


def sphere_metrics(points, square_points=None) -> dict[str, float]:
    """coverage, uniformity and largest_hole_deg of one point set, as run.json records them; with
    the points' `square_points`, also where the hole's rim sits in the square (`hole_rim`, rim_*)."""
    hole = largest_hole(points)
    metrics = {"coverage": coverage(points), "uniformity": uniformity(points), "largest_hole_deg": hole[0]}
    if square_points is not None:
        rim = hole_rim(square_points, points, hole=hole)
        metrics.update({name: value for name, value in rim.items() if name.startswith("rim_") and name != "rim_mask"})
        metrics["rim_mask"] = rim["rim_mask"]
    return metrics


# ----------------------------------------------------------------------------- what a seed drew

# The article's setup draws one of two shapes, by seed: a curled sheet leaving one large cap open
# (the "sphere with a missing corner") or a thin ribbon. On 64 seeds' 100x100 maps coverages fall in
# two modes, 0.08-0.16 (ribbons) and 0.31-0.73 (sheets), with no seed between (outcomes.png): the
# threshold sits in that gap.
SHEET_MIN_COVERAGE = 0.23    # a missing corner reaches at least this share of the sphere, a ribbon less
CORNER_HOLE_DEG = (20.0, 90.0)  # ... and a missing corner leaves one empty cap of this angular radius
OUTCOMES = ("missing corner", "ribbon", "other")


def classify_outcome(coverage_share: float, hole_deg: float) -> str:
    """'missing corner', 'ribbon' or 'other' (closed, or wide open) from two metrics of a map."""
    if coverage_share < SHEET_MIN_COVERAGE:
        return "ribbon"
    if CORNER_HOLE_DEG[0] <= hole_deg < CORNER_HOLE_DEG[1]:
        return "missing corner"
    return "other"  # closed (a small hole), or open wider than a hemisphere


def share_interval(count: int, total: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """count / total and its Wilson score interval (scipy's binomtest), as (share, low, high)."""
    interval = binomtest(int(count), int(total)).proportion_ci(confidence_level=confidence, method="wilson")
    return count / total, float(interval.low), float(interval.high)
