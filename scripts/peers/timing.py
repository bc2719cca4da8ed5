"""The timing rule of every Python peer, the same as `bnn bench infer`'s: warm-up calls for at least 0.2 s (and two
calls), then the median of `samples` samples of as many calls as fill about 50 ms each, in seconds per call."""
import math
import time


def median_seconds(run, samples):
    start, calls, last = time.perf_counter(), 0, 0.0
    while calls < 2 or time.perf_counter() - start < 0.2:
        t = time.perf_counter()
        run()
        last = time.perf_counter() - t
        calls += 1
    per_sample = max(1, math.ceil(0.05 / max(last, 1e-9)))
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        for _ in range(per_sample):
            run()
        times.append((time.perf_counter() - t) / per_sample)
    times.sort()
    return times[len(times) // 2]
