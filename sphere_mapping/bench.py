"""Benchmark: the article's 10^4-step training, and the whole seeds table, on the current device.

Run: python -m sphere_mapping.bench [--quick] [--set DEVICE=cpu] [--set TABLE_SEEDS=0]

1. One run: model.Trainer with one member against the article's listing as written (NumPy points,
   np.random.shuffle, nn.Dropout, nn.CosineSimilarity, torch.optim.Adam, a Python clamp loop,
   loss.item() every step), alternating in one process; medians of REPEATS; goal: >= 3x.
2. The table: TABLE_VARIANTS x TABLE_SEEDS runs of TABLE_STEPS steps trained as experiments.py
   does (stacked by shapes, WORKERS groups side by side), no metrics; goal: 4 x 10 x 10^4 in <= 3 min.
3. With ARTICLE_SEEDS > 0: the article's own loop on that many seeds, each map sorted into a shape.
CPU times are printed beside wall times: on a shared machine the wall time grows with the load.
"""

import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from lab import exit_on_lab_error, start_run
from sphere_mapping.metrics import classify_outcome, coverage, largest_hole, share_interval
from sphere_mapping.model import ARTICLE, Trainer, square_grid, train_many
from sphere_mapping.variants import check_variant, settings_for

# -----------------------------------------------------------------------------
# Constants. The article's values are the defaults; edit them here or use --set.
STEPS = 10_000            # steps of the timed single run (article: 10^4) {> 0}
REPEATS = 3               # timed runs of each loop, alternating; the median is reported {> 0}
BASELINE_STEPS = 2000     # steps of each article-loop run (its time is scaled to STEPS) {> 0}
TABLE_VARIANTS = ["article", "uniformity", "uniformity_cover", "wide_cover"]  # the table's variants
TABLE_SEEDS = 10          # seeds per variant in the timed table (0: skip the table) {>= 0}
TABLE_STEPS = 10_000      # steps per run of the timed table (article: 10^4) {> 0}
ARTICLE_SEEDS = 0         # also train the article's own loop for STEPS on seeds SEED.. and sort each map into a shape (~30 s a seed) {>= 0}
TORCH_THREADS = 1         # torch threads on CPU: one is fastest for this tiny net {>= 0}
WORKERS = 2               # table groups trained side by side, one thread each, as experiments.py {> 0}
SEED = 0                  # -1 draws a random seed and prints it
DEVICE = "auto"           # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"STEPS": 2000, "REPEATS": 3, "BASELINE_STEPS": 500, "TABLE_SEEDS": 2, "TABLE_STEPS": 1000}
DRY_RUN = {"STEPS": 20, "REPEATS": 1, "BASELINE_STEPS": 10, "TABLE_SEEDS": 1, "TABLE_STEPS": 10}
# -----------------------------------------------------------------------------


class ArticleNetwork(nn.Module):
    """The article's MyNetwork, as listed (nn.Dropout module, forward(allow_dropout))."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(2, 4), nn.Linear(4, 12)
        self.fc3, self.fc4 = nn.Linear(12, 6), nn.Linear(6, 3)
        self.dropout = nn.Dropout(p=0.2)

    def forward(self, points):
        hidden = self.dropout(F.relu(self.fc2(self.fc1(points))))
        return F.normalize(self.fc4(self.dropout(self.fc3(hidden))))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def article_loop(steps: int, device: str, seed: int | None = None) -> tuple[float, float, ArticleNetwork]:
    """The article's loop, step for step; returns (wall s, CPU s, the network). `seed` seeds torch
    and NumPy first (the article seeds none)."""
    if seed is not None:
        torch.manual_seed(seed)
        np.random.seed(seed)
    network = ArticleNetwork().to(device)
    cosine = nn.CosineSimilarity()
    optimizer = torch.optim.Adam(network.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1000, gamma=0.8)
    select = np.arange(1000)
    losses = []
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        points = np.random.rand(1000, 2) - 0.5
        loss = None
        for _split in range(2):
            output = network(torch.Tensor(points).to(device))
            np.random.shuffle(select)
            term = cosine(output[select[:500]], output[select[500:]]).sum() ** 2
            loss = term if loss is None else loss + term
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        for parameter in network.parameters():
            parameter.data.clamp_(-2, 2)
        losses.append(loss.item())
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu, network


def article_shapes(cfg, device: str, first_seed: int) -> list[dict]:
    """The article's own loop on ARTICLE_SEEDS seeds: each trained map's coverage, hole and shape."""
    grid = square_grid(100, device)  # as train.py's OUTCOME_GRID_SIDE, where the shapes' thresholds were set
    rows = []
    for seed in tqdm(range(first_seed, first_seed + cfg.ARTICLE_SEEDS), desc="the article's loop, seed by seed"):
        network = article_loop(cfg.STEPS, device, seed)[2].eval()
        with torch.no_grad():
            vectors = network(grid).cpu().numpy()
        reached, hole = coverage(vectors), largest_hole(vectors)[0]
        rows.append({"seed": seed, "outcome": classify_outcome(reached, hole), "coverage": reached,
                     "largest_hole_deg": hole})
        tqdm.write(f"seed {seed}: {rows[-1]['outcome']} (coverage {reached:.3f}, largest hole {hole:.1f} deg)")
    corner = sum(row["outcome"] == "missing corner" for row in rows)
    share, low, high = share_interval(corner, len(rows))
    print(f"the article's loop: missing corner on {corner}/{len(rows)} seeds ({100 * share:.0f}%, 95% Wilson "
          f"interval {100 * low:.0f}-{100 * high:.0f}%), ribbon on "
          f"{sum(row['outcome'] == 'ribbon' for row in rows)}")
    return rows


def trainer_loop(steps: int, device: str, seed: int) -> tuple[float, float]:
    """model.Trainer, one member, the article's settings; returns (wall seconds, CPU seconds)."""
    trainer = Trainer([ARTICLE], [seed], device)
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        loss = trainer.train_step()
    assert torch.isfinite(loss).all(), "the loss is not finite"  # one sync at the end: queued GPU work counts
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_single(cfg, device: str, seed: int) -> dict:
    """Alternate the two loops REPEATS times; medians and the ratio."""
    trainer_loop(50, device, seed)  # warm-up: allocator, kernels, lazy initialisation
    article_loop(20, device)
    fast, slow = [], []
    for _ in tqdm(range(cfg.REPEATS), desc="single run vs the article's loop (alternating)"):
        fast.append(trainer_loop(cfg.STEPS, device, seed))
        wall, cpu, _ = article_loop(cfg.BASELINE_STEPS, device)
        slow.append((wall * cfg.STEPS / cfg.BASELINE_STEPS, cpu * cfg.STEPS / cfg.BASELINE_STEPS))
    result = {"steps": cfg.STEPS,
              "trainer_wall_s": statistics.median(w for w, _ in fast),
              "trainer_cpu_s": statistics.median(c for _, c in fast),
              "article_loop_wall_s": statistics.median(w for w, _ in slow),
              "article_loop_cpu_s": statistics.median(c for _, c in slow),
              "ratio_by_run": [s[0] / f[0] for f, s in zip(fast, slow, strict=True)]}
    result["speedup_wall"] = result["article_loop_wall_s"] / result["trainer_wall_s"]
    result["speedup_cpu"] = result["article_loop_cpu_s"] / result["trainer_cpu_s"]
    return result


def bench_table(cfg, device: str) -> dict:
    """The seeds table's training as experiments.py does it: one stacked model per shape group."""
    variants = [check_variant(name) for name in cfg.TABLE_VARIANTS]
    members = [settings_for(v) for v in variants for _ in range(cfg.TABLE_SEEDS)]
    seeds = [seed for _ in variants for seed in range(cfg.TABLE_SEEDS)]
    bar = tqdm(total=cfg.TABLE_STEPS * len({m.shape_key for m in members}), desc=f"table: {len(members)} runs (steps of each group)")
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    trainers = train_many(members, seeds, cfg.TABLE_STEPS, device, progress=lambda trainer, losses: bar.update(1),
                          workers=cfg.WORKERS)
    finite = all(bool(torch.isfinite(t.theta).all()) for t in trainers)
    sync(device)
    result = {"runs": len(members), "steps": cfg.TABLE_STEPS, "groups": len(trainers), "workers": cfg.WORKERS,
              "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "finite": finite}
    bar.close()
    return result


def report(single: dict, table: dict | None, device: str, cfg) -> None:
    print(f"\nsphere_mapping.bench on {device} ({torch.get_num_threads()} torch thread(s))")
    print(f"| what | wall s (median of {cfg.REPEATS}) | CPU s | ratio |")
    print("|---|---|---|---|")
    print(f"| article's loop, {cfg.STEPS} steps (scaled from {cfg.BASELINE_STEPS}) | "
          f"{single['article_loop_wall_s']:.2f} | {single['article_loop_cpu_s']:.2f} | 1 |")
    print(f"| model.Trainer, one run, {cfg.STEPS} steps | {single['trainer_wall_s']:.2f} | {single['trainer_cpu_s']:.2f} | "
          f"{single['speedup_wall']:.2f}x wall, {single['speedup_cpu']:.2f}x CPU (goal >= 3x) |")
    if table is not None:
        print(f"| table: {table['runs']} runs x {table['steps']} steps in {table['groups']} stacked groups, {table['workers']} side by side (1 run) | "
              f"{table['wall_s']:.1f} | {table['cpu_s']:.1f} | goal <= 180 s for 40 x 10^4 |")
    print("Ratios per alternating pair: " + ", ".join(f"{r:.2f}" for r in single["ratio_by_run"]))


@exit_on_lab_error
def main(argv=None):
    run = start_run("sphere_mapping", globals(), argv, framework="torch")
    cfg = run.cfg
    single = bench_single(cfg, run.device, run.seed)
    table = bench_table(cfg, run.device) if cfg.TABLE_SEEDS > 0 else None
    report(single, table, run.device, cfg)
    shapes = article_shapes(cfg, run.device, run.seed) if cfg.ARTICLE_SEEDS > 0 else None
    run.finish({"device": run.device, "device_name": torch.cuda.get_device_name() if run.device.startswith("cuda") else "cpu",
                "torch_threads": torch.get_num_threads(), "single": single, "table": table,
                "article_loop_shapes": shapes})
    return {"single": single, "table": table}


if __name__ == "__main__":
    main()
