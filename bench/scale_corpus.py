"""A deterministic corpus for nightly runs at scale: night-1 JSON Lines shards, and a night 2 that differs a little.

    .venv/bin/python -m bench.scale_corpus --out /tmp/scale --records 1000000 --shards 20 [--changed 0.05 --new 0.01]

writes /tmp/scale/night1/part-SSSSS.jsonl and /tmp/scale/night2/part-SSSSS.jsonl: `{"id": ..., "text": ...}`
per line. Night 2 holds the same ids in the same places, a `changed` share of them with another text, and a
`new` share of new ids at the end of each shard, so `--skip_existing` night 1 reuses about 1 - changed of night 2.

Texts are English words from a fixed list, drawn by a Zipf-like weight, with lengths (in words) from a
log-normal of median `--median_words` (12 by default: most 5-32, a few past 100), a skewed mix of short and
long records, so tokenizing and hashing cost what they would. Everything is drawn from NumPy's PCG64 seeded by
(seed, shard, purpose), so a shard's content depends only on those and the sizes: the same on every machine
and whichever shards are written. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

WORDS = tuple(dict.fromkeys("""
the of and to in is was for that on with as by at from his it an were are which this be has had not first
new one their its after but who they two been her or more other year also all into time over three during
most some only later when can many city would up may school under world him made while part about where
such between then film state both well team national known season since out de used including government
number people three four five what no any game war named through early than these however high family life
each during album end best university called series because de music several early before group became
public company work three form born against house area north south east west including second based water
river play large american british small history back history population could same three system became
around old long day night work home place way days county members own make although along church party men
general near due being until following around last line town station land power law book main left even
court today major village record known take within included city union air several among held did name
without held release group years good based sold field role among top club women home built report market
service side set age story light music still began order show office political early much common short
""".split()))  # repeats dropped
# Short records (titles, reviews, messages): a night of 1M on the tiny model costs about what the
# measurement behind the incremental issue saw (~100 s on 2 cores); longer texts make the model dominate.
MEDIAN_WORDS = 12
SIGMA = 0.6  # log-normal spread: ~5% of texts under 5 words, ~5% over 32
MAX_WORDS = 400


@dataclass(frozen=True)
class NightPlan:
    """What one night's input holds: records per night-1 shard and how night 2 differs."""

    records: int = 1_000_000  # night 1's records, over all shards
    shards: int = 20
    changed: float = 0.05  # share of night 1's ids whose text differs on night 2
    new: float = 0.01  # night 2's new ids, as a share of night 1's records
    seed: int = 0
    median_words: int = MEDIAN_WORDS

    def shard_records(self, shard: int) -> int:
        """Night-1 records of one shard: the total spread as evenly as it divides."""
        base, extra = divmod(self.records, self.shards)
        return base + (1 if shard < extra else 0)

    def first_id(self, shard: int) -> int:
        base, extra = divmod(self.records, self.shards)
        return shard * base + min(shard, extra)


def _rng(plan: NightPlan, shard: int, purpose: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([plan.seed, shard, purpose]))


_WEIGHTS = 1.0 / np.arange(1, len(WORDS) + 1) ** 0.9
_CUMULATIVE = np.cumsum(_WEIGHTS / _WEIGHTS.sum())


def texts(rng: np.random.Generator, count: int, median_words: int = MEDIAN_WORDS) -> list[str]:
    """count texts drawn from rng: words from WORDS by Zipf-like weight, lengths log-normal around median_words."""
    lengths = np.clip(np.rint(rng.lognormal(np.log(median_words), SIGMA, count)), 1, MAX_WORDS).astype(np.int64)
    picks = np.searchsorted(_CUMULATIVE, rng.random(int(lengths.sum())), side="right")
    picks = np.minimum(picks, len(WORDS) - 1)
    words = np.asarray(WORDS, dtype=object)[picks]
    ends = np.cumsum(lengths)
    return [" ".join(words[end - n:end]) for n, end in zip(lengths.tolist(), ends.tolist(), strict=True)]


def night_records(plan: NightPlan, shard: int, night: int) -> Iterator[tuple[str, str]]:
    """(id, text) of one shard on night 1 or 2, in order."""
    count = plan.shard_records(shard)
    first = plan.first_id(shard)
    base = texts(_rng(plan, shard, 1), count, plan.median_words)
    if night == 2:
        rng = _rng(plan, shard, 2)
        changed = np.flatnonzero(rng.random(count) < plan.changed)
        for position, text in zip(changed.tolist(), texts(rng, len(changed), plan.median_words), strict=True):
            base[position] = f"{text} (revised)"
    for offset, text in enumerate(base):
        yield f"doc-{first + offset:09d}", text
    if night == 2:
        new_count = round(count * plan.new)
        for offset, text in enumerate(texts(_rng(plan, shard, 3), new_count, plan.median_words)):
            yield f"new-{shard:05d}-{offset:07d}", text


def write_night(plan: NightPlan, directory: Path, night: int) -> list[Path]:
    """Write every shard of one night as directory/part-SSSSS.jsonl; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for shard in range(plan.shards):
        path = directory / f"part-{shard:05d}.jsonl"
        lines = (json.dumps({"id": i, "text": t}) + "\n" for i, t in night_records(plan, shard, night))
        with path.open("w", encoding="utf-8") as f:
            f.writelines(lines)
        paths.append(path)
    logger.info("night %d: %d shards in %s", night, plan.shards, directory)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="writes OUT/night1 and OUT/night2")
    parser.add_argument("--records", type=int, default=NightPlan.records)
    parser.add_argument("--shards", type=int, default=NightPlan.shards)
    parser.add_argument("--changed", type=float, default=NightPlan.changed)
    parser.add_argument("--new", type=float, default=NightPlan.new)
    parser.add_argument("--seed", type=int, default=NightPlan.seed)
    parser.add_argument("--median_words", type=int, default=MEDIAN_WORDS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    plan = NightPlan(args.records, args.shards, args.changed, args.new, args.seed, args.median_words)
    for night in (1, 2):
        write_night(plan, args.out / f"night{night}", night)


if __name__ == "__main__":
    main()
