"""The date track: what a person sees in each frame of the date, measured in pixels.

Per frame: its likeness to each picture, over the whole frame and over the "distinctive" pixels where
the pictures differ (elsewhere the decoder's noise drowns the cap), and where the drawn cap is. Phases:
"start" (t < 0.1), "approach" (to the switch), "plateau" (to t = 0.88), "culmination" (the pulses)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.fft import rfft, rfftfreq
from skimage.feature import match_template

from pen_cap_vae.pictures import cap_box, draw_picture, draw_table

PULSE_TIMES = (0.90, 0.93, 0.96)   # the article's three Lorentzian pulses of s_(t)
PULSE_HALF_WIDTH = 0.01            # ... with half-width 0.01 of the cycle
APPROACH_T, CULMINATION_T = 0.1, 0.88
DIP_THRESHOLD = 0.02               # the least drop of likeness that counts as a visible pulse
NEAREST_MARGIN = DIP_THRESHOLD     # ... and the least lead over the next picture that is not a tie (None)
SPAN_MARGIN = 0.06                 # the cap is searched this far (a fraction of the width) beyond the pictures' span
DISTINCT_RANGE = 0.1               # a pixel is distinctive when the pictures' values there span more than this
DRAWN_TOLERANCE = 0.03             # the drawn pictures, if the mean absolute difference from them is below this


def distinctive_pixels(pictures: np.ndarray) -> np.ndarray:
    """(H, W) mask of the pixels where the pictures differ (in any colour channel)."""
    return (pictures.max(axis=0) - pictures.min(axis=0)).max(axis=-1) > DISTINCT_RANGE


def likeness(frame: np.ndarray, pictures: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Pearson correlation of an (H, W, 3) frame with each of (K, H, W, 3) pictures, over `mask` if given."""
    if mask is not None:
        frame, pictures = frame[mask], pictures[:, mask]
    centred = frame.reshape(-1) - frame.mean()
    flat = pictures.reshape(len(pictures), -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1) * max(float(np.linalg.norm(centred)), 1e-12)
    return flat @ centred / norms


def shrink(frame: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks (the edge rows and columns that do not fill a block are dropped)."""
    if factor == 1:
        return frame
    height, width = frame.shape[0] // factor * factor, frame.shape[1] // factor * factor
    return frame[:height, :width].reshape(height // factor, factor, width // factor, factor, -1).mean(axis=(1, 3))


def bare_table_likeness(pictures: np.ndarray) -> dict | None:
    """What a frame without pen and cap scores (the drawn bare table), or None for pictures not drawn here."""
    height, width = pictures.shape[1:3]
    if len(pictures) != 3:
        return None
    drawn = np.stack([np.asarray(draw_picture(k, height, width), dtype=np.float32) / 255.0 for k in range(3)])
    if float(np.abs(drawn - pictures).mean()) > DRAWN_TOLERANCE:
        return None
    table = np.asarray(draw_table(height, width), dtype=np.float32) / 255.0
    return {"likeness": [round(float(v), 4) for v in likeness(table, pictures)],
            "distinctive_likeness": [round(float(v), 4) for v in likeness(table, pictures, distinctive_pixels(pictures))]}


class CapLocator:
    """Where the cap's open end is in a frame (a fraction of the width), by template matching."""

    MIN_SCORE = 0.6   # a peak correlation below this in a picture: the template is not that cap
    MAX_WIDTH = 160   # frames are block-averaged to at most this width: ~10 ms a match instead of ~0.2 s

    def __init__(self, pictures: np.ndarray):
        """`pictures`: (K, H, W, 3) floats in [0, 1], the date's pictures at the frames' size."""
        self.factor = max(1, -(-pictures.shape[2] // self.MAX_WIDTH))
        pictures = np.stack([shrink(p, self.factor) for p in pictures])
        height, width = pictures.shape[1:3]
        self.width = width
        left, top, right, bottom = cap_box(0.74, height, width)
        drawn = np.asarray(draw_picture(0, height, width), dtype=np.float32) / 255.0
        self.template = drawn[top:bottom, left:right]
        # Search a band around the pen's axis: the cap of the drawn pictures moves along it only.
        margin = max(1, (bottom - top) // 4)
        self.rows = (max(0, top - margin), min(height, bottom + margin))
        self.span = (0, width)
        found = [self._locate(p) for p in pictures]
        self.picture_positions = [position for position, _ in found]
        # In the frames, search only where the cap goes between the pictures (and a little beyond):
        # the pen's barrel is a blue tube too, and in a noisy frame it can outscore a faint cap.
        margin = SPAN_MARGIN * width
        self.span = (max(0, int(min(self.picture_positions) * width - margin)),
                     min(width, int(max(self.picture_positions) * width + margin) + self.template.shape[1]))
        weakest = min(found[0][1], found[-1][1])
        self.reason = "" if weakest >= self.MIN_SCORE else (
            f"the drawn cap's template is not found in these pictures (best correlation {weakest:.2f} < "
            f"{self.MIN_SCORE}): the date track has the likeness only, no cap position")

    @property
    def available(self) -> bool:
        return not self.reason

    def locate(self, frame: np.ndarray) -> tuple[float, float]:
        """(cap's open end as a fraction of the width, peak correlation) in an (H, W, 3) frame."""
        return self._locate(shrink(frame, self.factor))

    def _locate(self, frame: np.ndarray) -> tuple[float, float]:
        band = frame[self.rows[0]:self.rows[1], self.span[0]:self.span[1]]
        scores = match_template(band, self.template)[..., 0]
        row, column = np.unravel_index(int(np.argmax(scores)), scores.shape)
        offset = 0.0
        if 0 < column < scores.shape[1] - 1:  # a parabola through the peak and its neighbours
            left, centre, right = scores[row, column - 1:column + 2]
            curvature = left - 2.0 * centre + right
            offset = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
        return (self.span[0] + column + offset) / self.width, float(scores[row, column])


class DateTrack:
    """Per frame: likeness to each picture, the cap's position and match score; in the date's checkpoint."""

    def __init__(self, pictures: np.ndarray):
        self.pictures = pictures
        self.locator = CapLocator(pictures)
        self.mask = distinctive_pixels(pictures)
        self.likeness, self.distinctive, self.cap, self.cap_score = [], [], [], []

    def add(self, frame: np.ndarray) -> None:
        self.likeness.append(likeness(frame, self.pictures).tolist())
        self.distinctive.append(likeness(frame, self.pictures, self.mask).tolist())
        position, score = self.locator.locate(frame) if self.locator.available else (np.nan, np.nan)
        self.cap.append(float(position))
        self.cap_score.append(score)

    def state(self) -> dict:
        shape = (-1, len(self.pictures))
        return {"likeness": torch.tensor(self.likeness, dtype=torch.float64).reshape(shape),
                "distinctive": torch.tensor(self.distinctive, dtype=torch.float64).reshape(shape),
                "cap": torch.tensor(self.cap, dtype=torch.float64),
                "cap_score": torch.tensor(self.cap_score, dtype=torch.float64)}

    def load_state(self, state: dict) -> None:
        self.likeness, self.distinctive = state["likeness"].tolist(), state["distinctive"].tolist()
        self.cap, self.cap_score = state["cap"].tolist(), state["cap_score"].tolist()


def phase_bounds(cycle: int, switch: int) -> dict[str, tuple[int, int]]:
    """Iterations [first, end) of each phase within one cycle (see the module's docstring)."""
    approach = min(int(round(APPROACH_T * cycle)), switch)
    culmination = max(int(round(CULMINATION_T * cycle)), switch)
    return {"start": (0, approach), "approach": (approach, switch), "plateau": (switch, culmination),
            "culmination": (culmination, cycle)}


def phase_masks(iterations: int, cycle: int, switch: int) -> dict[str, np.ndarray]:
    within = np.arange(iterations) % cycle
    return {name: (within >= first) & (within < end) for name, (first, end) in phase_bounds(cycle, switch).items()}


def dominant_period(track: np.ndarray) -> tuple[float, float]:
    """(period, amplitude) of a track's strongest oscillation once the straight-line drift is removed."""
    finite = np.isfinite(track)
    if finite.sum() < 8:
        return float("nan"), float("nan")
    values = track[finite]
    x = np.arange(len(values))
    residual = values - np.polyval(np.polyfit(x, values, 1), x)
    power = np.abs(rfft(residual)) ** 2
    frequencies = rfftfreq(len(residual))
    peak = 1 + int(np.argmax(power[1:]))
    return float(1.0 / frequencies[peak]), float(2.0 * np.sqrt(power[peak]) / len(residual))


def nearest(distinct: np.ndarray, similar: np.ndarray) -> dict:
    """What frames show: the nearest picture (None: a lead under NEAREST_MARGIN), its lead, the frames
    nearest each picture, the mean likenesses."""
    means = distinct.mean(axis=0)
    order = np.argsort(means)[::-1]
    lead = float(means[order[0]] - means[order[1]]) if len(means) > 1 else float("inf")
    return {"nearest_picture": int(order[0]) + 1 if lead >= NEAREST_MARGIN else None, "nearest_lead": round(lead, 4),
            "frames_nearest": np.bincount(distinct.argmax(axis=1), minlength=distinct.shape[1]).tolist(),
            "distinctive_likeness": [round(float(v), 4) for v in means],
            "likeness": [round(float(v), 4) for v in similar.mean(axis=0)]}


def culmination_parts(iterations: int, cycle: int, switch: int) -> dict[str, np.ndarray]:
    """The culmination's frames split into before, at (within PULSE_HALF_WIDTH), between and after the pulses."""
    culmination = phase_masks(iterations, cycle, switch)["culmination"]
    t = (np.arange(iterations) % cycle + 1) / cycle
    at = np.zeros(iterations, dtype=bool)
    for centre in PULSE_TIMES:
        at |= np.abs(t - centre) <= PULSE_HALF_WIDTH
    outside = culmination & ~at
    before, after = outside & (t < PULSE_TIMES[0]), outside & (t > PULSE_TIMES[-1])
    return {"before_pulses": before, "at_pulses": culmination & at, "between_pulses": outside & ~before & ~after,
            "after_pulses": after}


def summarise(track: DateTrack, cycle: int, switch: int, width: int) -> dict:
    """Per phase and culmination part what the frames show and where the cap is; the rhythm; the dips."""
    similar, distinct = np.asarray(track.likeness), np.asarray(track.distinctive)
    cap = np.asarray(track.cap)
    phases = {}
    for name, mask in phase_masks(len(similar), cycle, switch).items():
        if not mask.any():
            continue
        entry = nearest(distinct[mask], similar[mask])
        if np.isfinite(cap[mask]).any():
            entry["cap_position"] = round(float(np.nanmean(cap[mask])), 4)
            entry["cap_match"] = round(float(np.nanmean(np.asarray(track.cap_score)[mask])), 3)  # 1: a clear cap
            steps = np.abs(np.diff(cap[mask])) * width
            entry["cap_movement_px"] = round(float(np.nanmean(steps)), 3) if len(steps) else 0.0
        phases[name] = entry
    summary = {"phases": phases}
    parts = {name: {"frames": int(mask.sum()), **nearest(distinct[mask], similar[mask])}
             for name, mask in culmination_parts(len(similar), cycle, switch).items() if mask.any()}
    if parts:
        summary["culmination_parts"] = parts
    plateau = phase_masks(min(len(cap), cycle), cycle, switch)["plateau"]  # the first cycle's
    if plateau.any() and np.isfinite(cap[: len(plateau)][plateau]).any():
        period, amplitude = dominant_period(cap[: len(plateau)][plateau])
        summary["plateau_rhythm"] = {"period_iterations": round(period, 1), "amplitude_px": round(amplitude * width, 3)}
    summary["culmination_dips"], threshold = culmination_dips(similar, cycle, switch)
    summary["dip_threshold"] = round(threshold, 4)
    return summary


def culmination_dips(similar: np.ndarray, cycle: int, switch: int) -> tuple[list[dict], float]:
    """Per pulse of the first cycle: the likeness to the last picture's dip below the plateau's mean and
    its recovery half-way to the neighbours; visible when both are large enough (three pulses, not one break)."""
    masks = phase_masks(min(len(similar), cycle), cycle, switch)
    if not masks["plateau"].any():
        return [], float("nan")
    last = similar[:cycle, -1]
    plateau = last[masks["plateau"]]
    threshold = max(DIP_THRESHOLD, 3.0 * float(plateau.std()))
    half = max(1, int(round(PULSE_HALF_WIDTH * cycle)))

    def around(t: float) -> np.ndarray:
        centre = int(round(t * cycle)) - 1  # t = (i + 1) / cycle
        return last[max(0, centre - half): centre + half + 1]

    gap = (PULSE_TIMES[1] - PULSE_TIMES[0]) / 2.0
    dips = []
    for centre in PULSE_TIMES:
        window = around(centre)
        before, after = around(centre - gap), around(centre + gap)
        if len(window) == 0 or len(before) == 0 or len(after) == 0:
            continue
        lowest = float(window.min())
        dip = float(plateau.mean()) - lowest
        recovery = min(float(before.max()), float(after.max())) - lowest
        dips.append({"iteration": int(round(centre * cycle)) - 1, "lowest_likeness": round(lowest, 4),
                     "dip": round(dip, 4), "recovery": round(recovery, 4),
                     "visible": bool(dip > threshold and recovery > DIP_THRESHOLD)})
    return dips, threshold
