"""Run the four benchmarks and print their tables (``make bench``).

1. loader: kdutils' GpuLoader vs torchvision DataLoader + PIL transforms (images/s);
2. loop efficiency: ``fit`` vs a minimal hand-written loop on the same batches;
3. KD overhead: a KD epoch vs a student epoch plus a teacher inference pass;
4. precision and memory format of ResNet-18 training steps, and ``fit``'s automatic choice.

Every comparison is a ratio of candidates timed side by side in alternating rounds, so it
holds on a noisy machine where absolute times do not. Each benchmark writes
``runs/bench/<name>.csv`` and ``.json``; this script also writes ``runs/bench/tables.md``
(all tables) and then ``runs/bench/projection.*`` (full-profile training times, a
projection from FLOPs, see ``bench/projection.py``).

    python bench/run_all.py                        # about 3-5 minutes on an idle 2-core CPU
    python bench/run_all.py --quick                # fewer images, batches and rounds
    python bench/run_all.py --threads 1 --clock cpu   # steady ratios on a machine shared with other jobs
"""
from __future__ import annotations

import time

import bench_kd
import bench_loader
import bench_loop
import bench_precision
import common
import projection


def main(quick: bool = False) -> None:
    env = common.environment()
    header = (f"# kdutils benchmarks ({'quick' if quick else 'default'} run)\n\n"
              f"device: {env['device']} ({env['device_name']}, {env['cpu_capability']}), "
              f"{env['torch_threads']} torch threads on {env['cpu_cores']} cores, load average "
              f"{env['load_average_1min']}, torch {env['torch']}, clock: {common.clock_words()}\n")
    print(header, flush=True)
    t0 = time.perf_counter()
    texts, seconds = [header], []
    for bench in (bench_loader, bench_loop, bench_kd, bench_precision):
        start = time.perf_counter()
        bench.main(quick=quick)
        seconds.append(f"{bench.__name__} {time.perf_counter() - start:.0f}s")
    projection.main()  # uses bench_precision's measured throughput
    out = common.output_dir()
    texts += [(out / f"{name}.md").read_text() for name in ("loader", "loop", "kd_overhead", "precision", "projection")]
    (out / "tables.md").write_text("\n".join(texts))
    print(f"\nall benchmarks: {time.perf_counter() - t0:.0f}s ({', '.join(seconds)}); tables in {out / 'tables.md'}",
          flush=True)


if __name__ == "__main__":
    main(common.parse_args(__doc__).quick)
