#!/usr/bin/env python3
"""Turns the result files of scripts/bench-peers into its one table of ratios (Markdown, or JSON with --json).

usage: table.py RESULTS_DIR [--json]
RESULTS_DIR holds, for each comparison C and round R, C.bnn.R.json and C.peer.R.json (what the runs printed) or
C.bnn.R.err and C.peer.R.err (why a run failed or was skipped), and header.json (cpu, threads, date, versions, note).
A figure is the median over the rounds that succeeded; a row whose side has no success shows the reason instead.
"""
import glob, json, os, statistics, sys

# Readers of the figure a run printed: a packed row's ms per batch (`bnn bench infer`), a peer's row of that batch,
# the images/s of a training run (an array from `bnn bench train`, an object from the peers).


def packed(batch):
    return lambda rows: next(r["ms_per_batch"] for r in rows if r.get("engine") == "packed" and r["batch"] == batch)


def peer_batch(batch):
    return lambda rows: next(r["ms_per_batch"] for r in rows if r["batch"] == batch)


def first_images(rows):
    return (rows[0] if isinstance(rows, list) else rows)["images_per_second"]


# Each comparison: file prefix, what is measured, unit (training rows in images/s, inference rows in ms per batch),
# the peer, and how to read swift-bnn's and the peer's figure.
COMPARISONS = [
    ("train-pytorch", "training step, ResNet-20 1W1A ReSTE, batch 256", "images/s",
     "PyTorch, the authors' ReSTE code", first_images, first_images),
    ("train-larq", "training step, ResNet-20 1W1A, batch 256", "images/s",
     "Larq on TensorFlow (Keras train_on_batch)", first_images, first_images),
    ("infer-onnx-1", "packed inference, ResNet-20 1W1A, batch 1", "ms/batch",
     "ONNX Runtime fp32, full-precision twin", packed(1), peer_batch(1)),
    ("infer-onnx-256", "packed inference, ResNet-20 1W1A, batch 256", "ms/batch",
     "ONNX Runtime fp32, full-precision twin", packed(256), peer_batch(256)),
    ("infer-lce-1", "packed inference, ResNet-20 1W1A, batch 1", "ms/batch",
     "Larq Compute Engine (binary)", packed(1), peer_batch(1)),
    ("infer-lce-256", "packed inference, ResNet-20 1W1A, batch 256", "ms/batch",
     "Larq Compute Engine (binary)", packed(256), peer_batch(256)),
    ("infer-imagenet-1", "packed inference, ResNet-18 ImageNet 224×224, batch 1", "ms/batch",
     "ONNX Runtime fp32, full-precision twin", packed(1), peer_batch(1)),
]


def side(directory, comparison, name, read):
    """(median figure, rounds) from the successful runs, or (None, reason)."""
    figures, reasons = [], []
    for path in sorted(glob.glob(os.path.join(directory, f"{comparison}.{name}.*.json"))):
        try:
            with open(path) as file:
                figures.append(float(read(json.load(file))))
        except (ValueError, KeyError, StopIteration, IndexError, TypeError) as error:
            reasons.append(f"unreadable output ({type(error).__name__})")
    for path in sorted(glob.glob(os.path.join(directory, f"{comparison}.{name}.*.err"))):
        with open(path) as file:
            reasons.append(file.read().strip() or "failed")
    if figures:
        return statistics.median(figures), len(figures)
    return None, reasons[0] if reasons else None


def main():
    directory, as_json = sys.argv[1], "--json" in sys.argv[2:]
    with open(os.path.join(directory, "header.json")) as file:
        header = json.load(file)
    rows = []
    for comparison, what, unit, peer_name, read_bnn, read_peer in COMPARISONS:
        bnn, bnn_rounds = side(directory, comparison, "bnn", read_bnn)
        peer, peer_rounds = side(directory, comparison, "peer", read_peer)
        if bnn_rounds is None and peer_rounds is None:
            continue  # not run at all (e.g. the optional ImageNet row)
        row = {"comparison": comparison, "what": what, "peer": peer_name, "unit": unit,
               "swift_bnn": bnn, "peer_figure": peer, "ratio": None, "rounds": None, "note": None}
        if bnn is not None and peer is not None:
            # The ratio reads "swift-bnn is N× the peer": images/s divide one way, times the other.
            row["ratio"] = bnn / peer if unit == "images/s" else peer / bnn
            row["rounds"] = min(bnn_rounds, peer_rounds)
        else:
            row["note"] = peer_rounds if peer is None else f"swift-bnn: {bnn_rounds}"
        rows.append(row)
    if as_json:
        print(json.dumps({**header, "rows": rows}, indent=2))
        return

    def figure(value, unit):
        if value is None:
            return "—"
        return f"{value:,.1f} images/s" if unit == "images/s" else f"{value:.3f} ms"

    print(f"CPU: {header['cpu']}; threads: {header['threads']}; date: {header['date']}; "
          f"rounds: {header['rounds']} (medians)")
    print(f"Peers: {header['versions']}")
    print()
    print("| comparison | peer | swift-bnn | peer's figure | swift-bnn speed ÷ peer speed |")
    print("|---|---|---|---|---|")
    for row in rows:
        ratio = f"**{row['ratio']:.2f}×**" if row["ratio"] is not None else f"skipped ({row['note']})" \
            if row["note"] and row["note"].startswith(("no ", "setup:")) else f"failed: {row['note']}"
        ratio = ratio.replace("|", "\\|")  # a reason quoting a pipe must not split the cell
        print(f"| {row['what']} | {row['peer']} | {figure(row['swift_bnn'], row['unit'])} | "
              f"{figure(row['peer_figure'], row['unit'])} | {ratio} |")
    print()
    print(header["note"])


if __name__ == "__main__":
    main()
