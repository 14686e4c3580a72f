"""Two small picture folders of the kind a user brings, to measure image sessions on (README › Results › A folder of
your own pictures):

    shapes  colour 32×32 PNGs: a circle, square or triangle of a random colour and size on a noisy background of a
            random colour, 150 of each class (450 in all)
    photos  colour 32×32 crops of natural photographs, one class per photograph (an astronaut, a cat, a cup of
            coffee, a rocket, a motorcycle, brick, grass, gravel), 60 of each class: random crops of 15-40% of the
            photograph's shorter side, flipped at random, their brightness and contrast jittered

The photographs are the samples scikit-image ships; install its wheel without its dependencies and they are read
from it as files, never imported:

    pip install --no-deps scikit-image==0.26.0
    python benchmarks/picture_folders.py shapes /tmp/shapes
    python benchmarks/picture_folders.py photos /tmp/photos
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PHOTOS = {"astronaut": "astronaut.png", "cat": "chelsea.png", "coffee": "coffee.png", "rocket": "rocket.jpg",
          "motorcycle": "motorcycle_left.png", "brick": "brick.png", "grass": "grass.png", "gravel": "gravel.png"}


def make_shapes(out: Path, per_class: int = 150, size: int = 32, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name in ("circle", "square", "triangle"):
        (out / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            background = rng.integers(0, 256, 3)
            pixels = np.clip(background + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels)
            draw = ImageDraw.Draw(image)
            r = int(rng.integers(size // 6, size // 3))
            cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            if name == "circle":
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
            elif name == "square":
                draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
            else:
                draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
            image.save(out / name / f"{i:03d}.png")


def skimage_data() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the photos come from scikit-image's sample data: pip install --no-deps scikit-image==0.26.0")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def make_photos(out: Path, per_class: int = 60, size: int = 32, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    data = skimage_data()
    for name, file in PHOTOS.items():
        photo = Image.open(data / file).convert("RGB")
        w, h = photo.size
        (out / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            side = int(min(w, h) * rng.uniform(0.15, 0.40))
            x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            crop = photo.crop((x, y, x + side, y + side)).resize((size, size), Image.BILINEAR)
            if rng.random() < 0.5:
                crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
            pixels = np.asarray(crop, dtype=np.float32)
            pixels = (pixels - pixels.mean()) * rng.uniform(0.6, 1.4) + pixels.mean() + rng.uniform(-40, 40)
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out / name / f"{i:03d}.png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("shapes", "photos"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"{args.out} is not empty: choose a new folder")
    (make_shapes if args.kind == "shapes" else make_photos)(args.out, seed=args.seed)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
