#!/usr/bin/env python3
"""Writes a small synthetic image folder for trying `bnn train --data-format folder` and `bnn bench data`:
OUT_DIR/train/classNN/NNNN.jpg and OUT_DIR/val/classNN/NNNN.jpg, images of --size pixels (smooth gradients with a
class-dependent colour and a few random rectangles, so that JPEG compression behaves as on photographs).

Needs Pillow (Debian: python3-pil); the library itself never does.

    scripts/make_image_folder.py OUT_DIR [--classes 4] [--train 8] [--val 4] [--size 500x375] [--seed 0] [--png]
"""
import argparse
import os
import random
import sys

try:
    from PIL import Image, ImageDraw
except ImportError:
    sys.exit("make_image_folder.py needs Pillow: apt-get install python3-pil (or pip install Pillow)")


def image(width, height, label, rng):
    base = [(label * 67 + 40 * c) % 256 for c in range(3)]
    picture = Image.new("RGB", (width, height))
    pixels = picture.load()
    for y in range(height):
        for x in range(width):
            pixels[x, y] = tuple((base[c] + (x * (c + 1)) // 4 + y // (c + 2)) % 256 for c in range(3))
    draw = ImageDraw.Draw(picture)
    for _ in range(6):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = min(width - 1, x0 + rng.randrange(1, width // 2 + 2)), min(height - 1, y0 + rng.randrange(1, height // 2 + 2))
        draw.rectangle([x0, y0, x1, y1], fill=tuple(rng.randrange(256) for _ in range(3)))
    return picture


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--train", type=int, default=8, help="images per class in train/")
    parser.add_argument("--val", type=int, default=4, help="images per class in val/")
    parser.add_argument("--size", default="500x375", help="WIDTHxHEIGHT")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", action="store_true", help="write PNG files instead of JPEG (quality 90)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    rng = random.Random(args.seed)
    for split, count in (("train", args.train), ("val", args.val)):
        for label in range(args.classes):
            folder = os.path.join(args.out, split, f"class{label:02d}")
            os.makedirs(folder, exist_ok=True)
            for n in range(count):
                picture = image(width, height, label, rng)
                if args.png:
                    picture.save(os.path.join(folder, f"{n:04d}.png"))
                else:
                    picture.save(os.path.join(folder, f"{n:04d}.jpg"), quality=90)
    print(f"{args.out}: {args.classes} classes, {args.train} + {args.val} images per class of {width}x{height}")


if __name__ == "__main__":
    main()
