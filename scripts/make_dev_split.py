#!/usr/bin/env python3
"""Makes the development split the README's figures were measured on: 40,000 training and 10,000 validation
images carved from CIFAR-10's 50,000 training images, in the CIFAR-10 binary layout `bnn train --data` reads.

usage: make_dev_split.py SOURCE OUT_DIR

SOURCE is one of
  - a directory holding CIFAR-10's binary training files data_batch_1.bin ... data_batch_5.bin;
  - a directory or a .tar.gz holding the training images as train/<class>/<name>.jpg or .png (the ImageFolder
    layout; class folder names are CIFAR-10's: airplane, automobile, ..., truck). Needs Pillow.

The records are put in a fixed order (by file name for images, by file and position for binary files), shuffled
with Python's random.Random(20231002), and written as OUT_DIR/data_batch_1..4.bin (10,000 records each) and
OUT_DIR/test_batch.bin (the last 10,000), with batches.meta.txt. The official test split is not used, so it stays
an independent check. A record is 1 label byte, then the 1,024 red, 1,024 green and 1,024 blue bytes, rows top
to bottom.
"""
import io
import os
import random
import sys
import tarfile

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
RECORD = 1 + 32 * 32 * 3


def fail(message):
    sys.exit(f"make_dev_split: {message}")


def record_from_image(data, name):
    """One binary record from the bytes of a 32×32 image file; the label comes from its class folder."""
    from PIL import Image  # only needed for image sources

    parts = name.replace("\\", "/").split("/")
    if len(parts) < 2 or parts[-2] not in CLASSES:
        fail(f"{name}: the folder above an image must be a CIFAR-10 class name ({', '.join(CLASSES)})")
    try:
        image = Image.open(io.BytesIO(data)).convert("RGB")
    except Exception as error:  # Pillow raises several types for unreadable files
        fail(f"{name}: not a readable image ({error})")
    if image.size != (32, 32):
        fail(f"{name}: {image.size[0]}×{image.size[1]} pixels, expected 32×32")
    red, green, blue = image.split()
    return bytes([CLASSES.index(parts[-2])]) + red.tobytes() + green.tobytes() + blue.tobytes()


def records_from_binary(directory):
    records = []
    for index in range(1, 6):
        path = os.path.join(directory, f"data_batch_{index}.bin")
        with open(path, "rb") as handle:
            data = handle.read()
        if len(data) % RECORD != 0:
            fail(f"{path}: {len(data)} bytes is not a whole number of {RECORD}-byte records")
        for offset in range(0, len(data), RECORD):
            if data[offset] >= len(CLASSES):
                fail(f"{path}: record {offset // RECORD} has label {data[offset]}, expected 0...9")
            records.append((f"{index}:{offset // RECORD:06d}", data[offset:offset + RECORD]))
    return records


def records_from_images(source):
    records = []
    if os.path.isdir(source):
        for root, _, files in os.walk(source):
            for file in files:
                if file.lower().endswith((".jpg", ".jpeg", ".png")):
                    path = os.path.join(root, file)
                    with open(path, "rb") as handle:
                        name = os.path.relpath(path, source)
                        records.append((name, record_from_image(handle.read(), name)))
    else:
        with tarfile.open(source) as archive:
            for member in archive:
                if member.isfile() and member.name.lower().endswith((".jpg", ".jpeg", ".png")):
                    records.append((member.name, record_from_image(archive.extractfile(member).read(), member.name)))
    return records


def main():
    if len(sys.argv) != 3:
        fail("usage: make_dev_split.py SOURCE OUT_DIR (see the top of this file)")
    source, out = sys.argv[1], sys.argv[2]
    if not os.path.exists(source):
        fail(f"{source} does not exist")
    binary = os.path.isdir(source) and os.path.exists(os.path.join(source, "data_batch_1.bin"))
    records = records_from_binary(source) if binary else records_from_images(source)
    if len(records) != 50_000:
        fail(f"{source}: found {len(records)} training images, expected CIFAR-10's 50,000")
    records.sort()
    random.Random(20231002).shuffle(records)
    os.makedirs(out, exist_ok=True)
    names = [f"data_batch_{index}.bin" for index in range(1, 5)] + ["test_batch.bin"]
    for index, name in enumerate(names):
        # Written beside the target and renamed, so an interrupted run leaves no truncated file under the name.
        path = os.path.join(out, name)
        with open(path + ".partial", "wb") as handle:
            handle.write(b"".join(record for _, record in records[index * 10_000:(index + 1) * 10_000]))
        os.replace(path + ".partial", path)
    with open(os.path.join(out, "batches.meta.txt"), "w") as handle:
        handle.write("\n".join(CLASSES) + "\n")
    print(f"make_dev_split: 40,000 training and 10,000 validation records in {out}")


if __name__ == "__main__":
    main()
