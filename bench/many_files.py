"""What costs grow with the number of output files: an output of thousands of small files, made cheaply, then timed.

    .venv/bin/python -m bench.many_files make --files 20000 --out /tmp/many      # the output, once
    .venv/bin/python -m bench.many_files commit --files 20000 --out /tmp/commit   # staging + commit, timed
    .venv/bin/python -m bench.many_files manifest --files 100000                  # building and writing it, timed

`make` runs the job once on a few records (tiny model) for one real embeddings file and its manifest, then
copies the file under N part names and lists them in the manifest, as a run of N parts would: what
`python -m pipeline.search` / `pipeline.report` and a `--skip_existing` listing read is what they would
read after such a run, without running the job N times. `commit` stages N copies and runs the job's commit
step on them; `manifest` builds and serialises the manifest of N parts. Each prints seconds (and the
manifest's size); time the reading tools as whole processes from outside.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.device import build_tiny_model

REPO = Path(__file__).resolve().parents[1]
RECORDS_PER_FILE = 10


def make_output(out: Path, files: int) -> None:
    """A finished output of `files` embeddings files of RECORDS_PER_FILE rows each (copies of one real file)."""
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({"id": f"doc-{i}", "text": f"text number {i} of a few words"}) + "\n"
                                  for i in range(RECORDS_PER_FILE)))
        subprocess.run([sys.executable, "-m", "pipeline", "--input", str(corpus), "--output", str(out), "--id_field",
                        "id", "--model", str(build_tiny_model()), "--progress", "off", "--overwrite"],
                       check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = json.loads((out / "_SUCCESS").read_text())
    template = out / manifest["files"]["embeddings"][0]
    names = [f"embeddings-{i // 10_000:05d}-{i % 10_000:05d}.parquet" for i in range(files)]
    for name in names:
        if name != template.name:
            shutil.copyfile(template, out / name)
    row = manifest["shards"][0]
    manifest["shards"] = [{**row, "source": f"part-{i:05d}.jsonl"} for i in range(files)]
    manifest["counts"] = {k: v * files for k, v in manifest["counts"].items()}
    manifest["files"]["embeddings"] = names
    (out / "_SUCCESS").write_text(json.dumps(manifest, indent=1))


def time_commit(out: Path, files: int) -> dict:
    """Stage `files` small files as a run's parts would be, then time the job's commit step on them."""
    from apache_beam.io.filesystems import FileSystems

    from encoders import EncoderSpec
    from pipeline.formats.manifest import PartStats, ShardStats
    from pipeline.formats.output import part_file_names, staged_name
    from pipeline.settings import JobSettings
    from pipeline.stages.commit import CommitSettings, _CommitFn

    shutil.rmtree(out, ignore_errors=True)
    (out / "_temporary").mkdir(parents=True)
    shard_stats, part_stats = [], []
    for i in range(files):
        name = part_file_names(i, 0)[0]
        (out / staged_name(name)).write_bytes(b"x" * 100)
        shard_stats.append(ShardStats(f"part-{i:05d}.jsonl", RECORDS_PER_FILE, 0))
        part_stats.append(PartStats(f"part-{i:05d}.jsonl", 0, RECORDS_PER_FILE, (), (name,)))
    job = JobSettings(inputs=("in",), output=str(out))
    commit = _CommitFn(CommitSettings(job, EncoderSpec(model=str(build_tiny_model())), time.time()))
    start = time.perf_counter()
    commit._commit_output(shard_stats, part_stats, (), ())
    seconds = time.perf_counter() - start
    assert len(FileSystems.match([str(out / "embeddings-*.parquet")])[0].metadata_list) == files
    return {"files": files, "commit_seconds": round(seconds, 3),
            "manifest_bytes": (out / "_SUCCESS").stat().st_size}


def time_manifest(files: int) -> dict:
    """Build and serialise the manifest of a run of `files` one-part shards (no filesystem)."""
    from pipeline.formats.manifest import PartStats, ShardStats, build_manifest
    from pipeline.formats.output import part_file_names

    shard_stats = [ShardStats(f"gs://bucket/corpus/part-{i:06d}.jsonl.gz", 1000, 0) for i in range(files)]
    part_stats = [PartStats(s.source, 0, 1000, (), (part_file_names(i, 0)[0],)) for i, s in enumerate(shard_stats)]
    start = time.perf_counter()
    manifest = build_manifest(shard_stats, part_stats, {"model": "m"}, 0.0, 1.0)
    built = time.perf_counter() - start
    text = json.dumps(manifest, indent=1, ensure_ascii=False).encode("utf-8")
    serialised = time.perf_counter() - start - built
    start = time.perf_counter()
    json.loads(text)
    return {"files": files, "build_seconds": round(built, 3), "serialise_seconds": round(serialised, 3),
            "parse_seconds": round(time.perf_counter() - start, 3), "manifest_bytes": len(text)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("make", "commit", "manifest"))
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/many-files"))
    args = parser.parse_args()
    if args.what == "make":
        start = time.perf_counter()
        make_output(args.out, args.files)
        print(json.dumps({"files": args.files, "seconds": round(time.perf_counter() - start, 1)}))
    elif args.what == "commit":
        print(json.dumps(time_commit(args.out, args.files)))
    else:
        print(json.dumps(time_manifest(args.files)))


if __name__ == "__main__":
    main()
