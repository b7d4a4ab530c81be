"""Time 10-fold LFW evaluation of 6,000 pair scores: the vectorised search against the classic loop.

The classic loop (as in most public LFW scripts) walks 400 thresholds for each of the 10 folds, counting the
training-fold confusion matrix to choose a threshold and the test-fold one for the ROC. The vectorised search
sorts the scores once and reads every cut off cumulative counts. Prints both timings and their ratio.

Run: python benchmarks/lfw_eval.py [--repeats N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cnnrepro.evaluation import verification


def lfw_shaped_scores(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return random scores laid out as pairs.txt: 10 folds of 300 same then 300 not-same pairs."""
    rng = np.random.default_rng(seed)
    same = np.tile(np.r_[np.ones(300, bool), np.zeros(300, bool)], 10)
    fold = np.repeat(np.arange(10), 600)
    return rng.normal(same * 1.5, 1.0), same, fold


def best_time(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per method; the fastest counts")
    args = parser.parse_args()

    scores, same, fold = lfw_shaped_scores()
    fast = best_time(lambda: verification.evaluate(scores, same, fold), args.repeats)
    loop = best_time(lambda: verification.evaluate_grid_loop(scores, same, fold), max(1, args.repeats // 10))
    result = verification.evaluate(scores, same, fold)
    accuracies, _ = verification.evaluate_grid_loop(scores, same, fold)
    print(f"pairs: {scores.size}, folds: {np.unique(fold).size}")
    print(f"vectorised search : {fast * 1e3:8.2f} ms  (accuracy {result.mean_accuracy:.4f})")
    print(f"400-threshold loop: {loop * 1e3:8.2f} ms  (accuracy {accuracies.mean():.4f})")
    print(f"speed-up          : {loop / fast:8.1f}x")


if __name__ == "__main__":
    main()
