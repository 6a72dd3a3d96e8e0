"""Pictures of the map: plotly pages (interactive, as the article) and matplotlib PNGs (gallery).

The plotly pages work offline: plotly.min.js is written once next to them and linked relatively.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from lab import LabError
from lab.images import read_rgb
from lab.plots import save_figure

CAMERA = {"elev": 20.0, "azim": 35.0}  # the fixed matplotlib camera of every 3D PNG and frame


def position_colours(points: np.ndarray) -> np.ndarray:
    """The article's colouring of square points: red = 100 x + 120, green = 100 y + 120, blue 0 (RGB in [0, 1])."""
    points = np.asarray(points, dtype=np.float64)
    red = np.clip(points[:, 0] * 100.0 + 120.0, 0, 255)
    green = np.clip(points[:, 1] * 100.0 + 120.0, 0, 255)
    return np.stack([red, green, np.zeros_like(red)], axis=1) / 255.0


def hex_colours(rgb: np.ndarray) -> list[str]:
    values = np.clip(np.round(np.asarray(rgb) * 255.0), 0, 255).astype(int)
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in values]


def load_picture(spec: str, size: int) -> tuple[np.ndarray, str]:
    """The picture to paint (size x size x 3 in [0, 1]) and a line describing it. `spec`: a path to
    an image file or a scikit-image picture name (astronaut, chelsea, ...); converted to RGB, alpha dropped."""
    path = Path(spec).expanduser()
    if path.is_file():
        image = read_rgb(path, "PICTURE", flatten_on_white=False)  # alpha dropped, colours kept
        with Image.open(path) as opened:
            mode = opened.mode
        note = f"picture {path} ({image.width}x{image.height}, mode {mode}"
        note += ", converted to RGB)" if mode != "RGB" else ")"
    else:
        from skimage import data as bundled

        loader = getattr(bundled, spec, None) if spec.isidentifier() else None
        if loader is None or not callable(loader):
            raise LabError(f"PICTURE {spec!r} is neither an existing file nor an image bundled with "
                           "scikit-image; give a path to an image, or a name such as astronaut, chelsea, coffee")
        try:
            array = np.asarray(loader())
        except Exception as error:  # a name that needs a download, or is not an image
            raise LabError(f"scikit-image image {spec!r} is not available offline ({error}); "
                           "use astronaut, chelsea, coffee or rocket, or a path to an image") from None
        if array.ndim not in (2, 3) or array.dtype.kind not in "uif":
            raise LabError(f"scikit-image's {spec!r} is not a picture; use astronaut, chelsea, coffee or rocket")
        if array.dtype.kind == "f":
            array = (np.clip(array, 0, 1) * 255).astype(np.uint8)
        image = Image.fromarray(array.astype(np.uint8)).convert("RGB")
        note = f"scikit-image's {spec} ({image.width}x{image.height})"
    image = image.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.float64) / 255.0, note


def picture_points(side: int) -> np.ndarray:
    """Square coordinates of a side x side picture's pixels, row by row (the article's meshgrid):
    pixel (r, c) at x = c / (side-1) - 0.5, y = r / (side-1) - 0.5; the plots show y downwards."""
    axis = np.linspace(-0.5, 0.5, side)
    y, x = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([x.reshape(-1), y.reshape(-1)], axis=1)


def write_plotly(figure, path: Path) -> Path:
    figure.write_html(str(path), include_plotlyjs="directory", full_html=True)
    return path


def plotly_loss(losses: np.ndarray, path: Path) -> Path:
    import plotly.graph_objects as go

    figure = go.Figure(go.Scatter(y=losses, mode="lines", name="loss"))
    figure.update_layout(title="training loss (the article's px.line(loss_trace, log_y=True))",
                         xaxis_title="step", yaxis_title="loss", yaxis_type="log")
    return write_plotly(figure, path)


def plotly_square(points: np.ndarray, colours: list[str], path: Path, title: str, flip_y: bool = False) -> Path:
    import plotly.graph_objects as go

    figure = go.Figure(go.Scattergl(x=points[:, 0], y=points[:, 1], mode="markers",
                                    marker={"color": colours, "size": 5}))
    figure.update_layout(title=title, xaxis_title="x", yaxis_title="y", width=700, height=700)
    figure.update_yaxes(scaleanchor="x", autorange="reversed" if flip_y else True)
    return write_plotly(figure, path)


def plotly_sphere(vectors: np.ndarray, colours: list[str], path: Path, title: str, size: float = 3) -> Path:
    import plotly.graph_objects as go

    figure = go.Figure(go.Scatter3d(x=vectors[:, 0], y=vectors[:, 1], z=vectors[:, 2], mode="markers",
                                    marker={"color": colours, "size": size, "line": {"width": 0}}))
    figure.update_layout(title=title, scene={"aspectmode": "cube", "xaxis": {"range": [-1.05, 1.05]},
                                             "yaxis": {"range": [-1.05, 1.05]}, "zaxis": {"range": [-1.05, 1.05]}})
    return write_plotly(figure, path)


def png_loss(losses: np.ndarray, path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(np.arange(len(losses)), np.clip(losses, 1e-12, None), linewidth=0.6)
    if len(losses) >= 50:  # a running median shows the trend under the noisy per-step loss
        window = max(len(losses) // 100, 5)
        kernel = np.lib.stride_tricks.sliding_window_view(losses, window)
        axis.plot(np.arange(window - 1, len(losses)), np.median(kernel, axis=1), color="black",
                  linewidth=1.2, label=f"running median ({window} steps)")
        axis.legend()
    axis.set(yscale="log", xlabel="step", ylabel="loss: sum over splits of (sum of paired cosines)^2",
             title="training loss")
    return save_figure(figure, path, dpi=110)


def png_square(points: np.ndarray, colours: np.ndarray, path: Path, title: str, flip_y: bool = False) -> Path:
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.scatter(points[:, 0], points[:, 1], c=colours, s=6, linewidths=0)
    axis.set(aspect="equal", xlabel="x", ylabel="y", title=title)
    if flip_y:
        axis.invert_yaxis()
    return save_figure(figure, path, dpi=110)


def sphere_axis(axis, title: str) -> None:
    axis.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1), xticks=[-1, 0, 1], yticks=[-1, 0, 1], zticks=[-1, 0, 1])
    axis.set_box_aspect((1, 1, 1))
    axis.set_title(title, fontsize=10)


def towards_viewer(azim: float) -> np.ndarray:
    """The unit vector towards the camera at CAMERA's elevation and this azimuth: sorting points by
    it draws far ones first (matplotlib does not depth-sort)."""
    elev, az = np.radians(CAMERA["elev"]), np.radians(azim)
    return np.array([np.cos(elev) * np.cos(az), np.cos(elev) * np.sin(az), np.sin(elev)])


def sphere_views(figure, rows: int, row: int, vectors: np.ndarray, colours: np.ndarray, size: float,
                 title: str = "", fontsize: float = 10) -> None:
    """Two opposite views of the mapped points (front and back, so a missing cap shows on one) in
    row `row` of a rows x 2 figure; `title` over each (default: its azimuth)."""
    for column, azim in enumerate((CAMERA["azim"], CAMERA["azim"] + 180.0)):
        axis = figure.add_subplot(rows, 2, 2 * row + column + 1, projection="3d")
        order = np.argsort(vectors @ towards_viewer(azim))
        axis.scatter(*vectors[order].T, c=colours[order], s=size, linewidths=0, depthshade=False)
        axis.view_init(elev=CAMERA["elev"], azim=azim)
        sphere_axis(axis, "")
        axis.set_title(title or f"azimuth {azim:.0f} deg", fontsize=fontsize)


def png_sphere_views(vectors: np.ndarray, colours: np.ndarray, path: Path, title: str, size: float = 4) -> Path:
    figure = plt.figure(figsize=(10, 5))
    sphere_views(figure, 1, 0, vectors, colours, size)
    figure.suptitle(title)
    return save_figure(figure, path, dpi=100)


def animation_frames(snapshots: list[tuple[int, np.ndarray]], colours: np.ndarray, losses: np.ndarray):
    """One RGB frame per (step, mapped points) snapshot, fixed camera; yields uint8 arrays."""
    figure = plt.figure(figsize=(5, 5))
    axis = figure.add_subplot(projection="3d")
    axis.view_init(**CAMERA)
    sphere_axis(axis, "")
    viewer = towards_viewer(CAMERA["azim"])
    scatter = None
    for step, vectors in snapshots:
        order = np.argsort(vectors @ viewer)
        if scatter is not None:
            scatter.remove()
        scatter = axis.scatter(*vectors[order].T, c=colours[order], s=5, linewidths=0, depthshade=False)
        loss = f", loss {losses[step - 1]:.3g}" if 0 < step <= len(losses) else ""
        axis.set_title(f"step {step}{loss}", fontsize=10)
        figure.canvas.draw()
        yield np.asarray(figure.canvas.buffer_rgba())[:, :, :3].copy()
    plt.close(figure)


def png_hole_in_square(grid: np.ndarray, rim: dict, path: Path) -> Path:
    """The square, coloured as the article, with the points that map onto the largest hole's rim
    in black: where the map leaves the sphere open, in the square's own coordinates."""
    figure, axis = plt.subplots(figsize=(5.5, 5.5))
    axis.scatter(grid[:, 0], grid[:, 1], c=position_colours(grid), s=1, linewidths=0)
    mask = rim["rim_mask"]
    axis.scatter(grid[mask, 0], grid[mask, 1], c="black", s=4, linewidths=0, label="maps onto the hole's rim")
    band = 0.5 - 0.05
    axis.add_patch(plt.Rectangle((-band, -band), 2 * band, 2 * band, fill=False, linestyle="--", color="gray",
                                 label="inner edge of the border band"))
    axis.set(aspect="equal", xlabel="x", ylabel="y")
    axis.legend(loc="upper right", fontsize=8)
    axis.set_title(f"largest hole {rim['hole_deg']:.1f} deg: {100 * rim['rim_on_border']:.0f}% of its rim from the\n"
                   f"square's border band ({100 * rim['border_area']:.0f}% of the area)", fontsize=10)
    return save_figure(figure, path, dpi=100)


OUTCOME_COLOURS = {"missing corner": "tab:blue", "ribbon": "tab:orange", "other": "tab:gray"}


def png_seed_spheres(maps: np.ndarray, colours: np.ndarray, rows: list[dict], centres: np.ndarray, pictured: int,
                     path: Path, title: str) -> Path:
    """Small multiples: every seed's map, turned so that its largest hole (centres[k]) sits at the
    top, tilted 40 degrees towards the viewer; the pictured seed's title in red. 2D orthographic
    projections (far points paler): 32 matplotlib 3D axes take ten times longer to draw."""
    from scipy.spatial.transform import Rotation

    columns = min(8, len(rows))
    lines = -(-len(rows) // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(1.9 * columns, 2.1 * lines + 0.5), squeeze=False)
    towards_viewer, right, up = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    hole_at = np.cos(np.radians(40.0)) * up + np.sin(np.radians(40.0)) * towards_viewer
    angles = np.linspace(0.0, 2.0 * np.pi, 120)
    for axis in axes.flat:
        axis.set_axis_off()
    for axis, row, vectors, centre in zip(axes.flat, rows, maps, centres, strict=False):
        turn = Rotation.align_vectors(hole_at[None], np.asarray(centre, dtype=np.float64)[None])[0]
        turned = turn.apply(np.asarray(vectors, dtype=np.float64))
        depth = turned @ towards_viewer
        order = np.argsort(depth)
        shade = np.where(depth[order, None] < 0, 0.45, 1.0)  # the far side paler, seen through the hole
        axis.plot(np.cos(angles), np.sin(angles), color="lightgray", linewidth=0.6)
        axis.scatter(turned[order] @ right, turned[order] @ up, c=1.0 - shade * (1.0 - colours[order]), s=2,
                     linewidths=0)
        axis.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal")
        chosen = row["seed"] == pictured
        axis.set_title(f"seed {row['seed']}{' (pictured)' if chosen else ''}: {row['outcome']}\n"
                       f"coverage {row['coverage']:.2f}, hole {row['largest_hole_deg']:.0f} deg", fontsize=7,
                       color="red" if chosen else OUTCOME_COLOURS[row["outcome"]])
    figure.suptitle(f"{title}\n(each turned so that its largest hole is at the top, tilted towards you; far side paler)",
                    fontsize=10)
    return save_figure(figure, path, dpi=80)


def png_outcomes(rows: list[dict], path: Path, title: str) -> Path:
    """The seeds' coverage (histogram, stacked by shape) and coverage against largest hole, with
    the thresholds of metrics.classify_outcome: they sit in the gap between the two shapes."""
    from sphere_mapping.metrics import CORNER_HOLE_DEG, OUTCOMES, SHEET_MIN_COVERAGE

    figure, (histogram, scatter) = plt.subplots(1, 2, figsize=(11, 4.2))
    bins = np.linspace(0.0, 1.0, 41)
    stacked = [[row["coverage"] for row in rows if row["outcome"] == outcome] for outcome in OUTCOMES]
    histogram.hist(stacked, bins=bins, stacked=True, color=[OUTCOME_COLOURS[o] for o in OUTCOMES],
                   label=[f"{o} ({len(v)})" for o, v in zip(OUTCOMES, stacked, strict=True)])
    for axis in (histogram, scatter):
        axis.axvline(SHEET_MIN_COVERAGE, color="black", linestyle="--", linewidth=1)
    histogram.set(xlabel="coverage (share of 5-degree cells reached)", ylabel="seeds")
    histogram.legend(fontsize=8)
    histogram.set_title(f"dashed: {SHEET_MIN_COVERAGE} (ribbon below, sheet above)", fontsize=9)
    for outcome in OUTCOMES:
        own = [row for row in rows if row["outcome"] == outcome]
        scatter.scatter([r["coverage"] for r in own], [r["largest_hole_deg"] for r in own], s=18,
                        color=OUTCOME_COLOURS[outcome], label=outcome)
    for hole in CORNER_HOLE_DEG:
        scatter.axhline(hole, color="black", linestyle="--", linewidth=1)
    scatter.set(xlim=(0.0, 1.0), xlabel="coverage", ylabel="largest hole, degrees")
    scatter.set_title(f"missing corner: coverage >= {SHEET_MIN_COVERAGE}, hole {CORNER_HOLE_DEG[0]:g}-"
                      f"{CORNER_HOLE_DEG[1]:g} deg", fontsize=9)
    scatter.legend(fontsize=8)
    figure.suptitle(title)
    return save_figure(figure, path, dpi=100)
