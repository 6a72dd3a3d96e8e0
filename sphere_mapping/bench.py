"""Benchmark: wall time of the article's 10^4-step training on the current device.

Run: python -m sphere_mapping.bench [--quick] [--set DEVICE=cpu]

Times model.Trainer (everything on the device: points, permutations and loss history are
tensors there, the two dropout passes run as one batch, Adam is the fused kernel and the clamp
is one foreach call) and, in the same process, a baseline written the way the article's listing
does it: NumPy points and np.random.shuffle each step, two separate forward passes with
nn.Dropout, nn.CosineSimilarity, a Python loop clamping each parameter, loss.item() every step.
Prints medians of REPEATS runs and the ratio. Goal of the issue: <= 10 s on a 2-core CPU.
"""

import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from lab import exit_on_lab_error, start_run
from sphere_mapping.model import Trainer, TrainSettings

# -----------------------------------------------------------------------------
# Constants. The article's values are the defaults; edit them here or use --set.
STEPS = 10_000            # steps of the timed training (article: 10^4)
REPEATS = 3               # timed runs of the fast loop; the median is reported
BASELINE_STEPS = 1000     # steps of each baseline run (its time per step is scaled to STEPS)
BASELINE_REPEATS = 3      # timed runs of the baseline loop
THREADS = [1, 2]          # CPU thread counts to compare (ignored on CUDA)
SEED = 0                  # -1 draws a random seed and prints it
DEVICE = "auto"           # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"STEPS": 1000, "REPEATS": 2, "BASELINE_STEPS": 300, "BASELINE_REPEATS": 2}
DRY_RUN = {"STEPS": 20, "REPEATS": 1, "BASELINE_STEPS": 10, "BASELINE_REPEATS": 1, "THREADS": [1]}
# -----------------------------------------------------------------------------


class ArticleStyleNetwork(nn.Module):
    """The article's MyNetwork, as listed (nn.Dropout module, forward(allow_dropout))."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(2, 4), nn.Linear(4, 12)
        self.fc3, self.fc4 = nn.Linear(12, 6), nn.Linear(6, 3)
        self.dropout = nn.Dropout(p=0.2)

    def forward(self, points):
        hidden = self.dropout(F.relu(self.fc2(self.fc1(points))))
        return F.normalize(self.fc4(self.dropout(self.fc3(hidden))))


def baseline_run(steps: int, device: str) -> float:
    """The article's loop, step for step; returns seconds."""
    network = ArticleStyleNetwork().to(device)
    cosine = nn.CosineSimilarity()
    optimizer = torch.optim.Adam(network.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1000, gamma=0.8)
    select = np.arange(1000)
    losses = []
    started = time.perf_counter()
    for _ in range(steps):
        points = np.random.rand(1000, 2) - 0.5
        loss = 0.0
        for _split in range(2):
            output = network(torch.Tensor(points).to(device))
            np.random.shuffle(select)
            loss = loss + cosine(output[select[:500]], output[select[500:]]).sum() ** 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        for parameter in network.parameters():
            parameter.data.clamp_(-2, 2)
        losses.append(loss.item())
    return time.perf_counter() - started


def fast_run(steps: int, device: str) -> float:
    trainer = Trainer(TrainSettings(steps=steps), device)
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    final = float(trainer.losses[-1])  # one sync at the end, so queued GPU work is counted
    assert final == final, "the loss is NaN"
    return time.perf_counter() - started


@exit_on_lab_error
def main(argv=None):
    run = start_run("sphere_mapping", globals(), argv, framework="torch")
    cfg = run.cfg
    thread_counts = cfg.THREADS if run.device == "cpu" else [torch.get_num_threads()]
    metrics = {"device": run.device, "steps": cfg.STEPS, "cpu_count": torch.get_num_threads()}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        fast_run(50, run.device)  # warm-up: allocator, kernels, lazy initialisation
        fast = [fast_run(cfg.STEPS, run.device) for _ in tqdm(range(cfg.REPEATS), desc=f"fast loop, {threads} thread(s)")]
        slow = [baseline_run(cfg.BASELINE_STEPS, run.device) * cfg.STEPS / cfg.BASELINE_STEPS
                for _ in tqdm(range(cfg.BASELINE_REPEATS), desc=f"article-style loop, {threads} thread(s)")]
        fast_s, slow_s = statistics.median(fast), statistics.median(slow)
        metrics[f"threads_{threads}"] = {"train_s": fast_s, "article_style_s": slow_s, "speedup": slow_s / fast_s,
                                         "ms_per_step": 1000 * fast_s / cfg.STEPS}
        print(f"{threads} thread(s): {cfg.STEPS} steps in {fast_s:.2f} s (median of {cfg.REPEATS}; "
              f"{1000 * fast_s / cfg.STEPS:.2f} ms/step); article-style loop {slow_s:.2f} s "
              f"(scaled from {cfg.BASELINE_STEPS} steps) -> {slow_s / fast_s:.2f}x faster")
    best = min(v["train_s"] for k, v in metrics.items() if k.startswith("threads_"))
    metrics["best_train_s"] = best
    scale = "" if cfg.STEPS == 10_000 else f" (for {cfg.STEPS} steps; 10^4 steps: about {best * 10_000 / cfg.STEPS:.1f} s)"
    print(f"best: {best:.2f} s{scale}; goal <= 10 s for 10^4 steps on a 2-core CPU. "
          "Timings on a shared machine are inflated by the other processes' load.")
    run.finish(metrics)
    return metrics


if __name__ == "__main__":
    main()
