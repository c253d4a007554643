"""Shared fixtures: an isolated Vakta home, generated benign images and ways to run the CLI.

Every image here is generated (coloured shapes, gradients, noise); no test
needs or touches real material.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from vakta.cli import app

#: The installed console script, next to the interpreter running the tests.
VAKTA_BIN = Path(sys.executable).with_name("vakta")

#: Run the CLI under an address-space limit (bytes, from the environment):
#: a memory blow-up then fails fast instead of eating the machine.
_LIMITED_MAIN = """
import os, resource, sys
limit = int(os.environ["VAKTA_TEST_RLIMIT_AS"])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.argv[0] = "vakta"
from vakta.cli import main
main()
"""

PathArg = str | os.PathLike[str]


# --------------------------------------------------------------------------- CLI results


@dataclass(frozen=True)
class CliRun:
    """The outcome of one ``vakta`` invocation."""

    exit_code: int
    stdout: str
    stderr: str

    def records(self) -> list[dict[str, Any]]:
        """stdout parsed as JSON Lines (blank lines ignored)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def by_name(self) -> dict[str, dict[str, Any]]:
        """JSON Lines records keyed on the file name (last path component)."""
        out: dict[str, dict[str, Any]] = {}
        for record in self.records():
            name = Path(record["path"]).name
            assert name not in out, f"{name} reported twice: {self.stdout}"
            out[name] = record
        return out

    def json(self) -> Any:
        """stdout parsed as one JSON document."""
        return json.loads(self.stdout)

    def csv_rows(self) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self.stdout)))


#: What the ``run_cli`` and ``run_vakta`` fixtures are: ``run("scan", folder, "--all")``.
RunCli = Callable[..., CliRun]


def arg(value: PathArg | int) -> str:
    return str(value) if isinstance(value, int) else os.fspath(value)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh Vakta home (lists, cache) for this test, exported as ``VAKTA_HOME``."""
    path = tmp_path / "vakta-home"
    monkeypatch.setenv("VAKTA_HOME", str(path))
    return path


@pytest.fixture
def run_cli(home: Path) -> RunCli:
    """Run ``vakta ARGS...`` in-process; unexpected exceptions propagate (never a fake exit code)."""
    runner = CliRunner()

    def run(*args: PathArg | int) -> CliRun:
        result = runner.invoke(app, [arg(a) for a in args], catch_exceptions=False)
        return CliRun(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def run_vakta(home: Path) -> RunCli:
    """Run the installed ``vakta`` in a subprocess, killed (and the test failed) after ``timeout`` s.

    ``memory_limit`` caps the process's address space (``RLIMIT_AS``, bytes).
    """

    def run(*args: PathArg | int, timeout: float = 60, memory_limit: int | None = None) -> CliRun:
        env = dict(os.environ)
        if memory_limit is None:
            command = [str(VAKTA_BIN)] if VAKTA_BIN.exists() else [sys.executable, "-m", "vakta"]
        else:
            command = [sys.executable, "-c", _LIMITED_MAIN]
            env["VAKTA_TEST_RLIMIT_AS"] = str(memory_limit)
        try:
            done = subprocess.run(
                [*command, *(arg(a) for a in args)],
                capture_output=True,
                text=True,
                errors="backslashreplace",
                env=env,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"vakta {' '.join(map(arg, args))} did not finish within {timeout} s")
        return CliRun(done.returncode, done.stdout, done.stderr)

    return run


# --------------------------------------------------------------------------- time limits


class DeadlineExceeded(Exception):
    pass


@pytest.fixture
def deadline() -> Iterator[Callable[[int], Any]]:
    """``with deadline(5): ...`` fails the test if the block takes longer (SIGALRM based)."""

    @contextmanager
    def limit(seconds: int) -> Iterator[None]:
        def expired(signum: int, frame: FrameType | None) -> None:
            raise DeadlineExceeded(f"still running after {seconds} s (would hang)")

        previous = signal.signal(signal.SIGALRM, expired)
        signal.alarm(seconds)
        try:
            yield
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)

    yield limit


# --------------------------------------------------------------------------- generated images


class ImageFactory:
    """Deterministic, harmless test pictures: coloured shapes on a plain ground, or noise."""

    def pattern(self, seed: int, size: tuple[int, int] = (400, 300)) -> Image.Image:
        """Random rectangles and ellipses (strong structure, so PDQ quality is high)."""
        rng = np.random.default_rng(seed)

        def colour() -> tuple[int, int, int]:
            r, g, b = (int(v) for v in rng.integers(0, 256, 3))
            return r, g, b

        width, height = size
        im = Image.new("RGB", size, colour())
        draw = ImageDraw.Draw(im)
        for _ in range(12):
            for shape in (draw.ellipse, draw.rectangle):
                x0 = int(rng.integers(0, width * 7 // 8))
                y0 = int(rng.integers(0, height * 5 // 6))
                x1 = x0 + int(rng.integers(width // 20, width * 3 // 8))
                y1 = y0 + int(rng.integers(height // 15, height // 2))
                shape([x0, y0, x1, y1], fill=colour())
        return im

    def gradient(self, size: tuple[int, int] = (256, 256)) -> Image.Image:
        x = np.linspace(0, 255, size[0], dtype=np.float32)[None, :]
        y = np.linspace(0, 255, size[1], dtype=np.float32)[:, None]
        rgb = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
        return Image.fromarray(rgb, "RGB")

    def noise(self, seed: int, size: tuple[int, int] = (120, 90)) -> Image.Image:
        rng = np.random.default_rng(seed)
        return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")

    def encode(self, image: Image.Image, fmt: str, **params: Any) -> bytes:
        out = io.BytesIO()
        image.save(out, fmt, **params)
        return out.getvalue()

    def save(self, image: Image.Image, path: Path, fmt: str = "PNG", **params: Any) -> Path:
        """Write ``image`` in ``fmt`` (whatever the file name says)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.encode(image, fmt, **params))
        return path


@pytest.fixture
def images() -> ImageFactory:
    return ImageFactory()


# --------------------------------------------------------------------------- a list of known images


@dataclass
class KnownList:
    """Two generated originals (outside any scanned folder) on an imported detect list."""

    name: str
    folder: Path
    a: Path
    b: Path
    hashes: dict[str, dict[str, Any]] = field(default_factory=dict)  # "a"/"b" -> `vakta hash` JSON
    entry_ids: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def known(tmp_path: Path, images: ImageFactory, run_cli: RunCli) -> KnownList:
    """Originals A and B hashed with ``vakta hash`` and imported from a CSV list named ``known``."""
    folder = tmp_path / "originals"
    a = images.save(images.pattern(1), folder / "a.png")
    b = images.save(images.pattern(2), folder / "b.png")
    hashed = run_cli("hash", a, b)
    assert hashed.exit_code == 0, hashed.stderr
    hashes = {Path(r["path"]).stem: r for r in hashed.records()}
    entry_ids = {"a": "A-1", "b": "B-1"}
    list_file = tmp_path / "known.csv"
    with list_file.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "category", "md5", "sha1", "pdq"])
        for key in ("a", "b"):
            h = hashes[key]
            writer.writerow([entry_ids[key], "1", h["md5"], h["sha1"], h["pdq"]])
    imported = run_cli("lists", "import", list_file, "--name", "known", "--format", "csv")
    assert imported.exit_code == 0, imported.stderr
    return KnownList("known", folder, a, b, hashes, entry_ids)
