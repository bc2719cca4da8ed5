#!/usr/bin/env python3
"""Times ResNet-20 1W1A in Larq: a training step on TensorFlow, and packed inference in Larq Compute Engine (LCE).

usage: larq_peer.py train [--threads N] [--batch-size 256] [--warmup-steps 2] [--steps 8]
       larq_peer.py infer [--threads N] [--batch-sizes 1 256] [--samples 7]
Prints JSON: one object for train (images_per_second, seconds_per_step), an array of rows for infer
(batch, images_per_second, ms_per_batch). Needs tensorflow, tf-keras, larq and (for infer) larq-compute-engine.

The network is written here after the paper's ResNet-20 1W1A, the one `bnn` trains: a real 3×3 first convolution
(16 channels) → ReLU → batch norm; three stages of three blocks at 16, 32 and 64 channels, the first block of stages
2 and 3 with stride 2; each block two binary 3×3 convolutions, each followed by ReLU then batch norm, plus an option-A
shortcut (every other pixel, channels padded with zeros) added after the second; global average pool → batch norm →
a real dense layer to 10 logits. A binary convolution is larq's QuantConv2D with sign (straight-through) on its input
and its weights and the weights clipped to [-1, 1]; no scaling factor (it does not change the cost).

train: Keras `train_on_batch` with SGD (lr 0.1, momentum 0.9) and cross-entropy on random CIFAR-shaped batches;
intra-op threads N, inter-op 1. The figure counts the images of the timed steps over their wall time.
infer: the model, built for each batch size (the converted graph has a fixed batch), is converted with
`larq_compute_engine.convert_keras_model` and run in LCE's interpreter with N threads; warm-up, then the median of
--samples samples of enough runs to last about 50 ms each.
"""
import argparse, json, os, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import median_seconds  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # only errors from TensorFlow's C++ side
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # larq 0.14 is written for Keras 2 (tf-keras)


def build(tf, lq, batch_size=None):
    """The ResNet-20 1W1A described above, as a functional Keras model on 32×32×3 NHWC inputs."""
    layers = tf.keras.layers
    binary = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                  use_bias=False, padding="same")

    def shortcut(x, width):
        pad = (width - x.shape[-1]) // 2
        return layers.Lambda(lambda t: tf.pad(t[:, ::2, ::2, :], [[0, 0], [0, 0], [0, 0], [pad, pad]]))(x)

    inputs = tf.keras.Input((32, 32, 3), batch_size=batch_size)
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization(momentum=0.9)(layers.ReLU()(x))
    width = 16
    for stage, stage_width in enumerate([16, 32, 64]):
        for index in range(3):
            stride = 2 if stage > 0 and index == 0 else 1
            y = lq.layers.QuantConv2D(stage_width, 3, strides=stride, **binary)(x)
            y = layers.BatchNormalization(momentum=0.9)(layers.ReLU()(y))
            y = lq.layers.QuantConv2D(stage_width, 3, **binary)(y)
            y = layers.BatchNormalization(momentum=0.9)(layers.ReLU()(y))
            x = layers.Add()([y, x if stride == 1 and stage_width == width else shortcut(x, stage_width)])
            width = stage_width
    x = layers.BatchNormalization(momentum=0.9)(layers.GlobalAveragePooling2D()(x))
    return tf.keras.Model(inputs, layers.Dense(10)(x))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["train", "infer"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--samples", type=int, default=7)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf
    # Thread counts must be set before TensorFlow runs its first operation.
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import larq as lq
    from importlib.metadata import version

    rng = np.random.default_rng(1)
    tf.random.set_seed(1)
    if args.mode == "train":
        model = build(tf, lq)
        model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
                      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        # Four distinct batches, cycled, as the PyTorch timer does.
        batches = [(rng.standard_normal((args.batch_size, 32, 32, 3), dtype=np.float32),
                    rng.integers(0, 10, args.batch_size)) for _ in range(4)]
        for index in range(max(args.warmup_steps, 1)):  # the first call traces the graph
            model.train_on_batch(*batches[index % 4])
        started = time.perf_counter()
        for index in range(args.steps):
            model.train_on_batch(*batches[index % 4])
        seconds = (time.perf_counter() - started) / args.steps
        print(json.dumps({"peer": "larq", "model": "resnet20-1w1a", "batch": args.batch_size, "threads": args.threads,
                          "steps": args.steps, "seconds_per_step": seconds,
                          "images_per_second": args.batch_size / seconds, "tensorflow": tf.__version__,
                          "larq": version("larq")}))
        return

    import larq_compute_engine as lce
    rows = []
    for batch in args.batch_sizes:
        flatbuffer = lce.convert_keras_model(build(tf, lq, batch_size=batch))
        interpreter = lce.testing.Interpreter(flatbuffer, num_threads=args.threads)
        x = rng.standard_normal((batch, 32, 32, 3), dtype=np.float32)
        # The wrapper's own predict() feeds a batch-1 model one image at a time; the batch-N model takes x whole.
        seconds = median_seconds(lambda: interpreter.interpreter.predict([x]), args.samples)
        rows.append({"engine": "lce", "model": "resnet20-1w1a", "batch": batch, "threads": args.threads,
                     "images_per_second": batch / seconds, "ms_per_batch": 1000 * seconds,
                     "larq_compute_engine": version("larq-compute-engine"), "tensorflow": tf.__version__})
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
