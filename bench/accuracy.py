"""Detection accuracy: recall per transform and false matches, Vakta against the reference.

Puts the PDQ hash of every original photo of the corpus on a list, makes
altered copies of each (re-encodes, resizes, filters, rotations, a watermark
strip, a screenshot-like frame, padding, crops), scans the copies and the
distractor images with Vakta's real pipeline (``Scanner``, as ``vakta scan``),
and prints recall per transform and every false match.  Where ``pdqhash`` is
installed, the reference pipeline (full-resolution Pillow decode, ``pdqhash``,
all eight dihedral hashes) is measured on the same files in the same run.

    python bench/accuracy.py [CORPUS_DIR] [--threshold 31] [--limit N] [--workers N]

Only benign pictures are used: the corpus's ordinary photos and distractors.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from vakta.lists.store import EntryRow
from vakta.matching.index import ListIndex
from vakta.matching.matcher import Matcher
from vakta.matching.search import MIN_QUALITY
from vakta.pipeline import Scanner, hash_item
from vakta.signals import pdq
from vakta.signals.model import HashOptions
from vakta.sources.filesystem import SOURCE

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

Transform = Callable[[Image.Image, random.Random], Image.Image]


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    im.convert("RGB").save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue()))


def _resize(im: Image.Image, factor: float) -> Image.Image:
    size = (max(1, round(im.width * factor)), max(1, round(im.height * factor)))
    return im.resize(size, Image.Resampling.LANCZOS)


def _gamma(im: Image.Image, gamma: float) -> Image.Image:
    table = [round(255 * (i / 255) ** gamma) for i in range(256)] * len(im.getbands())
    return im.point(table)


def _noise(im: Image.Image, rng: random.Random) -> Image.Image:
    gen = np.random.default_rng(rng.randrange(2**32))
    a = np.asarray(im.convert("RGB"), dtype=np.float32)
    a += gen.normal(0, 12, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _brightness_contrast(im: Image.Image) -> Image.Image:
    a = np.asarray(im.convert("RGB"), dtype=np.float32)
    a = (a - 128) * 0.8 + 128 + 25
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _watermark_strip(im: Image.Image) -> Image.Image:
    """A semi-opaque white band across the lower part with dark text, as stock sites stamp."""
    base = im.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    top = round(base.height * 0.72)
    bottom = round(base.height * 0.84)
    d.rectangle((0, top, base.width, bottom), fill=(255, 255, 255, 150))
    font = ImageFont.load_default(size=max(8, (bottom - top) * 2 // 3))
    d.text(
        (base.width // 20, top + (bottom - top) // 8), "SAMPLE  PREVIEW  ©", fill=(20, 20, 20, 200), font=font
    )
    return Image.alpha_composite(base, layer).convert("RGB")


def _screenshot(im: Image.Image) -> Image.Image:
    """Rescaled onto a white page (uneven margins, as a screen capture crops them), then JPEG."""
    inner = _resize(im.convert("RGB"), 0.7)
    w, h = inner.size
    left, top, right, bottom = round(w * 0.12), round(h * 0.18), round(w * 0.10), round(h * 0.08)
    page = Image.new("RGB", (w + left + right, h + top + bottom), (255, 255, 255))
    page.paste(inner, (left, top))
    return _jpeg(page, 80)


def _pad(im: Image.Image, fraction: float) -> Image.Image:
    dx, dy = round(im.width * fraction / 2), round(im.height * fraction / 2)
    return ImageOps.expand(im.convert("RGB"), border=(dx, dy, dx, dy), fill=(0, 0, 0))


def _crop(im: Image.Image, fraction: float) -> Image.Image:
    dx, dy = round(im.width * fraction / 2), round(im.height * fraction / 2)
    return im.crop((dx, dy, im.width - dx, im.height - dy))


TRANSFORMS: dict[str, tuple[str, Transform]] = {
    "jpeg_q50": ("gentle", lambda im, r: _jpeg(im, 50)),
    "webp": ("gentle", lambda im, r: im),  # saved as WebP below
    "resize_50": ("gentle", lambda im, r: _resize(im, 0.5)),
    "resize_25": ("gentle", lambda im, r: _resize(im, 0.25)),
    "blur": ("gentle", lambda im, r: im.filter(ImageFilter.GaussianBlur(max(1.0, min(im.size) / 400)))),
    "gamma": ("gentle", lambda im, r: _gamma(im.convert("RGB"), 0.6)),
    "noise": ("gentle", _noise),
    "brightness_contrast": ("gentle", lambda im, r: _brightness_contrast(im)),
    "greyscale": ("gentle", lambda im, r: im.convert("L")),
    "rotate_90": ("gentle", lambda im, r: im.transpose(Image.Transpose.ROTATE_90)),
    "mirror": ("gentle", lambda im, r: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    "watermark_strip": ("hard", lambda im, r: _watermark_strip(im)),
    "screenshot": ("hard", lambda im, r: _screenshot(im)),
    "pad_black_20": ("hard", lambda im, r: _pad(im, 0.2)),
    "crop_5": ("report", lambda im, r: _crop(im, 0.05)),
    "rotate_4deg": ("report", lambda im, r: im.convert("RGB").rotate(4, resample=Image.Resampling.BICUBIC)),
}
GOALS = {"gentle": 0.99, "hard": 0.90, "report": None}


def _make_copies(job: tuple[Path, Path, int]) -> list[str]:
    original, out_dir, seed = job
    rng = random.Random(seed)
    im = Image.open(original)
    im.load()
    written = []
    for name, (_, fn) in TRANSFORMS.items():
        copy = fn(im, rng)
        path = out_dir / f"{original.stem}__{name}.{'webp' if name == 'webp' else 'jpg'}"
        if name == "webp":
            copy.convert("RGB").save(path, "WEBP", quality=80)
        else:
            copy.convert("RGB").save(path, "JPEG", quality=90)
        written.append(path.name)
    return written


def _reference_hashes(path: Path) -> list[tuple[str, int]]:
    """The reference pipeline: Pillow full-resolution decode into pdqhash, eight dihedral hashes."""
    import pdqhash

    a = np.asarray(Image.open(path))
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.shape[2] == 4:
        a = a[..., :3]
    vectors, quality = pdqhash.compute_dihedral(np.ascontiguousarray(a))
    return [(f"{int(''.join(str(int(b)) for b in v), 2):064x}", int(quality)) for v in vectors]


def _vakta_list(originals: list[Path]) -> tuple[ListIndex, list[str]]:
    """The list of the originals' hashes, and the originals on it.

    Hashes of quality below 50 are never matched (the reference's rule), so
    such originals cannot be found by anyone and are left out of recall.
    """
    rows = []
    usable = []
    for path in originals:
        # Lists come from other organisations' reference tools: full-resolution hashes.
        options = HashOptions(extra_queries=False, reduce_jpeg=False)
        signals = hash_item(next(SOURCE.items(str(path))), options)
        if signals.pdq is None or (signals.pdq_quality or 0) < MIN_QUALITY:
            continue
        usable.append(path.stem)
        value = bytes.fromhex(signals.pdq)
        rows.append(EntryRow("originals", "pdq", value, path.stem, None, signals.pdq_quality, "bench", ""))
    return ListIndex.build(rows), usable


def _label(name: str) -> tuple[str, str]:
    stem = Path(name).stem
    original, _, transform = stem.partition("__")
    return original, transform


def _score(results: dict[str, set[str]], transforms: list[str], originals: list[str]) -> dict[str, float]:
    recall = {}
    for t in transforms:
        hits = sum(1 for o in originals if o in results.get(f"{o}__{t}", set()))
        recall[t] = hits / len(originals)
    return recall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--threshold", type=int, default=31)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N originals")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-baseline", action="store_true", help="skip the reference pipeline")
    ap.add_argument("--json", action="store_true", help="print results as JSON")
    args = ap.parse_args()
    originals_dir, distractors_dir = args.corpus / "originals", args.corpus / "distractors"
    if not originals_dir.is_dir():
        print(
            f"corpus not found: {originals_dir} (give the corpus folder as the first argument)",
            file=sys.stderr,
        )
        return 2
    originals = sorted(p for p in originals_dir.iterdir() if p.is_file())
    if args.limit:
        originals = originals[: args.limit]
    distractors = (
        sorted(p for p in distractors_dir.iterdir() if p.is_file()) if distractors_dir.is_dir() else []
    )
    baseline = not args.no_baseline
    if baseline:
        try:
            import pdqhash  # noqa: F401
        except ImportError:
            print(
                "pdqhash not installed: reference baseline skipped (pip install '.[bench]')", file=sys.stderr
            )
            baseline = False

    index, names = _vakta_list(originals)
    low_quality = len(originals) - len(names)
    matcher = Matcher(index, args.threshold)
    transforms = list(TRANSFORMS)
    with tempfile.TemporaryDirectory(prefix="vakta-accuracy-") as tmp:
        copies = Path(tmp)
        t0 = time.monotonic()
        with ProcessPoolExecutor(args.workers) as pool:
            list(pool.map(_make_copies, [(p, copies, i) for i, p in enumerate(originals)], chunksize=4))
        print(
            f"made {len(originals) * len(transforms)} copies in {time.monotonic() - t0:.1f} s",
            file=sys.stderr,
        )

        t0 = time.monotonic()
        vakta: dict[str, set[str]] = {}
        false_matches: list[str] = []
        scanner = Scanner(matcher, HashOptions(), workers=args.workers)
        for finding in scanner.scan([str(copies), *map(str, distractors)]):
            path = Path(finding.signals.path)
            ids = {m.meta.entry_id or "" for m in finding.matches}
            if path.parent == copies:
                vakta[path.name.rsplit(".", 1)[0]] = ids
                own = _label(path.name)[0]
                false_matches += [f"{path.name} -> {i}" for i in ids if i != own]
            else:
                false_matches += [f"{path.name} -> {i}" for i in ids]
        vakta_time = time.monotonic() - t0
        recall = _score(vakta, transforms, names)

        ref_recall: dict[str, float] = {}
        ref_false: list[str] = []
        ref_time = 0.0
        if baseline:
            t0 = time.monotonic()
            ref_list = {p.stem: _reference_hashes(p)[0] for p in originals if p.stem in names}
            ref_list = {n: h for n, (h, q) in ref_list.items() if q >= MIN_QUALITY}
            ref_found: dict[str, set[str]] = {}
            for path in [*sorted(copies.iterdir()), *distractors]:
                try:
                    hashes = _reference_hashes(path)
                except Exception as exc:  # the reference has no error handling of its own
                    print(f"reference failed on {path.name}: {exc}", file=sys.stderr)
                    continue
                ids = {
                    n
                    for n, h in ref_list.items()
                    for q, quality in hashes
                    if quality >= MIN_QUALITY and pdq.hamming(q, h) <= args.threshold
                }
                if path.parent == copies:
                    ref_found[path.stem] = ids
                    ref_false += [f"{path.name} -> {i}" for i in ids if i != _label(path.name)[0]]
                else:
                    ref_false += [f"{path.name} -> {i}" for i in ids]
            ref_time = time.monotonic() - t0
            ref_recall = _score(ref_found, transforms, names)

    results = {
        "originals": len(originals),
        "originals_quality_below_50": low_quality,
        "distractors": len(distractors),
        "threshold": args.threshold,
        "recall": recall,
        "false_matches": false_matches,
        "reference_recall": ref_recall,
        "reference_false_matches": ref_false,
        "vakta_scan_s": round(vakta_time, 1),
        "reference_s": round(ref_time, 1),
    }
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_table(results)
    met = all(recall[t] >= (GOALS[group] or 0) for t, (group, _) in TRANSFORMS.items()) and not false_matches
    return 0 if met else 1


def _print_table(r: dict[str, object]) -> None:
    recall = r["recall"]
    ref = r["reference_recall"]
    assert isinstance(recall, dict) and isinstance(ref, dict)
    print(
        f"originals {r['originals']} (quality < 50: {r['originals_quality_below_50']}), "
        f"distractors {r['distractors']}, threshold {r['threshold']}"
    )
    print(f"{'transform':22s} {'group':7s} {'vakta':>7s} {'reference':>10s}  goal")
    for name, (group, _) in TRANSFORMS.items():
        goal = GOALS[group]
        ref_text = f"{ref[name]:10.1%}" if name in ref else f"{'-':>10s}"
        verdict = "" if goal is None else ("met" if recall[name] >= goal else "MISSED")
        goal_text = f">= {goal:.0%} {verdict}" if goal is not None else "(reported)"
        print(f"{name:22s} {group:7s} {recall[name]:7.1%} {ref_text}  {goal_text}")
    fm = r["false_matches"]
    rfm = r["reference_false_matches"]
    assert isinstance(fm, list) and isinstance(rfm, list)
    print(f"false matches: vakta {len(fm)} (goal 0), reference {len(rfm) if ref else '-'}")
    for line in fm[:20]:
        print(f"  {line}")
    print(f"time: vakta scan {r['vakta_scan_s']} s, reference {r['reference_s']} s")


if __name__ == "__main__":
    raise SystemExit(main())
