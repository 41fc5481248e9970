"""`make bench-scale`: how the job's cost and memory grow from 100k to millions of records, on both runners.

    .venv/bin/python -m bench.scale [--sizes 100000,1000000] [--runners local,portable]
                                    [--devices null,tiny-model] [--nights 1,2] [--repeats 3]

For each size a deterministic corpus (`bench.scale_corpus`: JSON Lines with ids, a skewed length mix, and a
night 2 with 5% of texts changed and 1% new ids) is written once. Each run is a fresh process running the job
through its CLI with `--id_field id`; night 2 adds `--skip_existing` night 1 and `--snapshot`. The device is
replaced as in `bench.device` (null, simulated GPU) or is the tiny real model. On the portable runner the run
starts Beam's job service and SDK worker pool (`pipeline.portable.portable_services`) and the job goes
through them; the workers get the same device through a `sitecustomize` on PYTHONPATH.

Per run: whole-process wall, the manifest's wall and busy seconds by stage, the job counters of
`pipeline.stages.metrics` (keys stage time and the bytes its keys carry into the grouping, time to read earlier
outputs' ids and hashes, snapshot copy time, commit time), on the local runner every step's busy time from
Beam's own execution-time metrics, output files (number, bytes), manifest bytes, and the peak RSS (VmHWM) of
every process: the launcher and, on the portable runner, the job service, the worker pool and its SDK workers.
Runs under a million records are repeated and the median kept: their fixed cost varies by seconds.
Results go to bench/results-scale.{md,json}. A benchmark, not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.device import (
    DEVICE_VARIABLE,
    L4_MINILM_PADDED_TOKENS_PER_SECOND,
    build_tiny_model,
    cpu_flags,
    cpu_model,
    device_setting,
    worker_site_dir,
)
from bench.scale_corpus import NightPlan, write_night

REPO = Path(__file__).resolve().parents[1]
DEVICES = {"null": 0.0, "simulated-gpu": 1.0 / L4_MINILM_PADDED_TOKENS_PER_SECOND, "tiny-model": None}
RUNNERS = ("local", "portable")
# The shapes: 100k in 10 shards, 1M in 20; larger sizes keep 50,000 records a shard.
SHARDS = {100_000: 10, 1_000_000: 20}
RSS_SAMPLE_SECONDS = 0.2
REPEAT_BELOW = 1_000_000  # smaller runs are repeated (`--repeats`); larger ones run once
RESULTS_NAME = "results-scale"


@dataclass(frozen=True)
class RunSpec:
    """One measurement: a corpus size, a night, a device and a runner."""

    records: int
    night: int
    device: str
    runner: str

    @property
    def name(self) -> str:
        return f"{self.runner}-{self.device}-{self.records}-night{self.night}"


def shards_for(records: int) -> int:
    return SHARDS.get(records, max(1, records // 50_000))


def corpus_dir(workdir: Path, records: int) -> Path:
    """The corpus of this size (night1/, night2/), written once (generation is deterministic)."""
    directory = workdir / f"corpus-{records}"
    done = directory / ".done"
    if not done.exists():
        plan = NightPlan(records=records, shards=shards_for(records))
        for night in (1, 2):
            write_night(plan, directory / f"night{night}", night)
        done.write_text(json.dumps(asdict(plan)))
    return directory


def job_args(spec: RunSpec, workdir: Path, model: Path) -> list[str]:
    """The job's flags for a run; night 2 reuses night 1 of the same runner and device."""
    corpus = corpus_dir(workdir, spec.records)
    args = ["--input", str(corpus / f"night{spec.night}" / "*.jsonl"), "--output", str(output_dir(workdir, spec)),
            "--id_field", "id", "--model", str(model), "--max_seq_length", "128", "--progress", "off",
            "--overwrite"]
    if spec.night == 2:
        first = output_dir(workdir, RunSpec(spec.records, 1, spec.device, spec.runner))
        args += ["--skip_existing", f"{first}/*.parquet", "--snapshot"]
    return args


def output_dir(workdir: Path, spec: RunSpec) -> Path:
    return workdir / "out" / spec.name


# --- in the child process: one run ---------------------------------------------------------------------------


class PeakMemory:
    """Peak RSS (VmHWM) of this process and every process in the given sessions, sampled until stopped.

    VmHWM never falls during a process's life, so the last sample before it exits is its peak, short of
    growth in its final RSS_SAMPLE_SECONDS.
    """

    def __init__(self) -> None:
        self.sessions: set[int] = set()
        self.peaks: dict[int, tuple[str, int]] = {}  # pid -> (command, peak KiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_SECONDS):
            self.sample()

    def sample(self) -> None:
        pids = [os.getpid()]
        if self.sessions:
            for entry in os.listdir("/proc"):
                if entry.isdigit() and _session(int(entry)) in self.sessions:
                    pids.append(int(entry))
        for pid in pids:
            peak = _vm_hwm_kib(pid)
            if peak:
                command = self.peaks.get(pid, (None, 0))[0] or _command(pid)
                self.peaks[pid] = (command, max(peak, self.peaks.get(pid, ("", 0))[1]))


def _session(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[3])  # fields after the command: state, ppid, pgrp, session


def _vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _command(pid: int) -> str:
    """What a process is, in a few words: launcher, job service, worker pool or SDK worker."""
    if pid == os.getpid():
        return "launcher"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    for needle, name in (("local_job_service_main", "job service"), ("worker_pool_main", "worker pool"),
                         ("SdkHarness", "SDK worker"), ("sdk_worker_main", "SDK worker")):
        if needle in cmdline:
            return name
    return cmdline[:60]


def run_one(spec: RunSpec, args: list[str], result_file: Path, services_dir: Path) -> None:
    """Run the job here (as `python -m pipeline` or through the portable services); write what was measured."""
    import apache_beam as beam

    results = []
    run = beam.Pipeline.run

    def run_and_keep(self, *a, **k):  # the CLI returns an exit code; the metrics live on the PipelineResult
        result = run(self, *a, **k)
        results.append(result)
        return result

    beam.Pipeline.run = run_and_keep
    from pipeline.cli import main

    started = time.perf_counter()
    with PeakMemory() as memory:
        if spec.runner == "portable":
            from pipeline.portable import portable_services

            services_dir.mkdir(parents=True, exist_ok=True)
            with portable_services(str(services_dir)) as services:
                memory.sessions.update(services.pids)
                code = main([*args, *services.runner_args()])
                memory.sample()
                metrics = _metrics(results[-1], system=False) if results else {}  # while the job service runs
        else:
            code = main(args)
            metrics = _metrics(results[-1], system=True) if results else {}
    wall = time.perf_counter() - started
    measured = {"exit_code": code, "job_process_seconds": round(wall, 3), **metrics,
                "processes": [{"pid": pid, "process": name, "peak_rss_mib": round(kib / 1024, 1)}
                              for pid, (name, kib) in sorted(memory.peaks.items())]}
    result_file.write_text(json.dumps(measured, indent=1))
    sys.exit(code)


def _metrics(result, system: bool) -> dict:
    """The job's counters; with system (the local runner only reports them) every step's busy milliseconds."""
    from apache_beam.metrics import MetricsFilter

    from pipeline.stages.metrics import METRICS_NAMESPACE

    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    out: dict = {"counters": {c.key.metric.name: c.committed for c in query["counters"]}}
    if system and hasattr(result, "monitoring_metrics"):
        steps: dict[str, int] = {}
        for c in result.monitoring_metrics().query()["counters"]:
            name = getattr(c.key.metric, "name", "")
            if name.endswith("ptransform_execution_time:total_msecs:v1") and c.key.step and c.committed:
                step = "/".join(c.key.step.split("/")[:2])  # e.g. Decide/ReadKeys
                steps[step] = steps.get(step, 0) + c.committed
        out["step_busy_ms"] = dict(sorted(steps.items(), key=lambda kv: -kv[1]))
    return out


# --- in the parent: runs, results -----------------------------------------------------------------------------


def measure(spec: RunSpec, workdir: Path, model: Path, site: Path) -> dict:
    """Run spec in a fresh process; its manifest's account, its counters, its outputs and peak memory."""
    args = job_args(spec, workdir, model)
    result_file = workdir / f"{spec.name}.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    env.pop(DEVICE_VARIABLE, None)
    setting = device_setting(DEVICES[spec.device])
    if setting:
        env[DEVICE_VARIABLE] = setting
    log = workdir / f"{spec.name}.log"
    started = time.perf_counter()
    with log.open("wb") as out:
        subprocess.run([sys.executable, "-m", "bench.scale", "--run", json.dumps(asdict(spec)), "--result",
                        str(result_file), "--services_dir", str(workdir / "services" / spec.name), "--", *args],
                       cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    wall = time.perf_counter() - started
    measured = json.loads(result_file.read_text())
    output = output_dir(workdir, spec)
    manifest_path = output / "_SUCCESS"
    manifest = json.loads(manifest_path.read_text())
    perf = manifest["performance"]
    parquet = sorted(output.glob("*.parquet"))
    counters = measured.get("counters", {})
    read = manifest["counts"]["read"]
    job_wall = perf["wall_seconds"]
    return {
        **asdict(spec),
        "counts": manifest["counts"],
        "process_wall_seconds": round(wall, 3),
        "job_wall_seconds": job_wall,
        "encoder_build_seconds": perf["encoder_build_seconds"],
        "us_per_record": round(job_wall / read * 1e6, 2),
        "stage_busy_seconds": perf.get("stage_seconds", {}),
        "step_busy_seconds": {k: round(v / 1000, 3) for k, v in measured.get("step_busy_ms", {}).items()},
        "keys_seconds": _seconds(counters, "keys_ms"),
        "key_bytes": counters.get("key_bytes"),
        "earlier_keys_seconds": _seconds(counters, "earlier_keys_ms"),
        "earlier_rows": counters.get("earlier_rows"),
        "snapshot_copy_seconds": _seconds(counters, "snapshot_copy_ms"),
        "commit_seconds": _seconds(counters, "commit_ms"),
        "output_files": len(parquet),
        "output_bytes": sum(p.stat().st_size for p in parquet),
        "manifest_bytes": manifest_path.stat().st_size,
        "processes": measured["processes"],
        "peak_rss_mib": max(p["peak_rss_mib"] for p in measured["processes"]),
    }


def measure_repeated(spec: RunSpec, workdir: Path, model: Path, site: Path, repeats: int) -> dict:
    """The run with the median job wall time of `repeats` runs, with every run's wall time and peak RSS.

    Runs this small are mostly fixed cost (imports, the model, the portable services), which varies by seconds
    from run to run; one run of them made the start-up-excluded ratios swing by 2x and more.
    """
    runs = [measure(spec, workdir, model, site) for _ in range(max(1, repeats))]
    kept = sorted(runs, key=lambda r: r["job_wall_seconds"])[(len(runs) - 1) // 2]
    return {"name": spec.name, **kept,
            "repeats": [{"job_wall_seconds": r["job_wall_seconds"], "peak_rss_mib": r["peak_rss_mib"]} for r in runs]}


def _seconds(counters: dict, name: str) -> float | None:
    return round(counters[name] / 1000, 3) if name in counters else None


STARTUP_RECORDS = 10_000  # runs below this size measure start-up (the fixed cost), not growth


def scaling(runs: list[dict]) -> list[dict]:
    """Per runner, device and night: the largest size's cost per record and peak RSS over the smallest's.

    Cost per record is the job's wall time over records read; when a start-up run (under STARTUP_RECORDS
    records) of the same runner, device and night exists, its wall time is taken off first, as the issue's
    figures left start-up out. Both ratios are given.
    """
    rows = []
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["runner"], run["device"], run["night"]), []).append(run)
    for (runner, device, night), group in sorted(groups.items()):
        group = sorted(group, key=lambda r: r["records"])
        startup = group[0]["job_wall_seconds"] if group[0]["records"] < STARTUP_RECORDS else None
        sized = [r for r in group if r["records"] >= STARTUP_RECORDS]
        if len(sized) < 2:
            continue
        small, large = sized[0], sized[-1]

        def per_record(run: dict, fixed: float) -> float:
            return (run["job_wall_seconds"] - fixed) / run["counts"]["read"]

        row = {"runner": runner, "device": device, "night": night, "small": small["records"],
               "large": large["records"],
               "cost_per_record_ratio": round(per_record(large, 0) / per_record(small, 0), 3),
               "peak_rss_ratio": round(large["peak_rss_mib"] / small["peak_rss_mib"], 3),
               "startup_seconds": startup}
        if startup is not None:
            row["cost_per_record_ratio_after_startup"] = round(
                per_record(large, startup) / per_record(small, startup), 3)
        rows.append(row)
    return rows


def render(results: dict) -> str:
    """The results as Markdown."""
    machine = results["machine"]
    out = [
        "# Scale (`make bench-scale`)",
        "",
        f"{results['date']}, {machine['cpu_model']}, {machine['cpus']} CPUs, flags "
        f"{', '.join(machine['cpu_flags']) or 'none'}; Python {machine['python']}. Corpus: `bench.scale_corpus` "
        "(JSON Lines, ids, log-normal lengths of median 12 words; night 2: 5% of texts changed, 1% new ids), "
        "`--id_field id --max_seq_length 128`; night 2 adds `--skip_existing` night 1 `--snapshot`. "
        "Simulated GPU: an L4 running MiniLM (estimated, "
        f"{L4_MINILM_PADDED_TOKENS_PER_SECOND:,} padded tokens/s).",
        "",
        "## Growth",
        "",
        "| runner | device | night | sizes | cost per record, large / small | same, start-up excluded (start-up s) "
        "| peak RSS, large / small |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results.get("scaling", []):
        after = row.get("cost_per_record_ratio_after_startup")
        after = "–" if after is None else f"{after:.2f}x ({row['startup_seconds']:.1f})"
        out.append(f"| {row['runner']} | {row['device']} | {row['night']} | {row['small']:,} → {row['large']:,} | "
                   f"{row['cost_per_record_ratio']:.2f}x | {after} | {row['peak_rss_ratio']:.2f}x |")
    out += [
        "",
        "## Runs",
        "",
        "| runner | device | records | night | process s | job s | µs/record | keys s | key MB | earlier ids s | "
        "snapshot copy s | commit s | files | output MB | manifest KB | peak RSS MiB (largest process) |",
        "|---" * 16 + "|",
    ]
    for r in results["runs"]:
        def cell(value, scale=1.0, fmt="{:.2f}"):
            return "–" if value is None else fmt.format(value / scale)

        out.append("| " + " | ".join([
            r["runner"], r["device"], f"{r['counts']['read']:,}", str(r["night"]), f"{r['process_wall_seconds']:.1f}",
            f"{r['job_wall_seconds']:.1f}", f"{r['us_per_record']:.1f}", cell(r["keys_seconds"]),
            cell(r["key_bytes"], 1e6, "{:.1f}"), cell(r["earlier_keys_seconds"]), cell(r["snapshot_copy_seconds"]),
            cell(r["commit_seconds"]), str(r["output_files"]), f"{r['output_bytes'] / 1e6:.1f}",
            f"{r['manifest_bytes'] / 1e3:.1f}", f"{r['peak_rss_mib']:,.0f}"]) + " |")
    out += ["", "## Peak RSS of every process (MiB)", ""]
    for r in results["runs"]:
        procs = ", ".join(f"{p['process']} {p['peak_rss_mib']:,.0f}" for p in r["processes"])
        out.append(f"- {r['runner']} {r['device']} {r['records']:,} night {r['night']}: {procs}")
    repeated = [r for r in results["runs"] if len(r.get("repeats", [])) > 1]
    if repeated:
        out += ["", f"## Repeated runs (under {REPEAT_BELOW:,} records; the median by job s is the row above)", ""]
        for r in repeated:
            runs = ", ".join(f"{x['job_wall_seconds']:.1f} s {x['peak_rss_mib']:,.0f} MiB" for x in r["repeats"])
            out.append(f"- {r['runner']} {r['device']} {r['records']:,} night {r['night']}: {runs}")
    out += ["", "## Busy seconds by stage", "",
            "From the manifest (`performance.stage_seconds`, summed over threads, so they overlap) and, on the local "
            "runner, Beam's own execution time of each step (the step's own time, not what it hands on).", ""]
    for r in results["runs"]:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stage_busy_seconds"].items())
        steps = ", ".join(f"{k} {v:.1f}" for k, v in list(r["step_busy_seconds"].items())[:8])
        out.append(f"- {r['name']}: manifest: {stages}" + (f"; steps: {steps}" if steps else ""))
    out += ["", "## Notes", "", *[f"- {note}" for note in results.get("notes", [])], "",
            "`job s` is the manifest's wall time (the pipeline built to `_SUCCESS`, encoder build included); "
            "`process s` the whole child process (imports, TensorFlow, the portable services' start and stop). "
            "Cost per record is `job s` / records read. `keys s`, `earlier ids s`, `snapshot copy s` and `commit s` "
            "are the job counters of `pipeline.stages.metrics` (busy time summed over elements; keys include "
            "handing each key to the grouping). `key MB` is what the keys carry into the grouping by id "
            "(ids, source names, hashes, two numbers), before Beam's own framing.", ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--runners", default=",".join(RUNNERS))
    parser.add_argument("--devices", default="null,tiny-model")
    parser.add_argument("--nights", default="1,2")
    parser.add_argument("--only", default="", help="runs to do, as RUNNER:DEVICE:SIZE[,...] (default: every "
                                                   "combination)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-scale"))
    parser.add_argument("--output", type=Path, default=REPO / "bench")
    parser.add_argument("--note", action="append", default=[], help="a line for the results' notes")
    parser.add_argument("--repeats", type=int, default=3, help=f"runs of each size under {REPEAT_BELOW:,} records "
                        "(the median by job wall time is kept; default: 3)")
    parser.add_argument("--merge", action="store_true", help="add to the existing results instead of replacing")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # one measurement, in a child process
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--services_dir", type=Path, help=argparse.SUPPRESS)
    args, job = parser.parse_known_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.run:
        run_one(RunSpec(**json.loads(args.run)), [a for a in job if a != "--"], args.result, args.services_dir)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    model = build_tiny_model()
    site = worker_site_dir(args.workdir / "site")
    specs = []
    wanted = {tuple(item.split(":")) for item in args.only.split(",") if item}
    for records in (int(s) for s in args.sizes.split(",")):
        for runner in args.runners.split(","):
            for device in args.devices.split(","):
                if wanted and (runner, device, str(records)) not in wanted:
                    continue
                specs += [RunSpec(records, int(night), device, runner) for night in args.nights.split(",")]
    json_path = args.output / f"{RESULTS_NAME}.json"
    results = json.loads(json_path.read_text()) if args.merge and json_path.exists() else {"runs": [], "notes": []}
    results.update({"machine": {"cpu_model": cpu_model(), "cpu_flags": cpu_flags(), "cpus": os.cpu_count(),
                                "platform": platform.platform(), "python": platform.python_version()},
                    "date": datetime.date.today().isoformat()})
    results["notes"] += args.note
    for spec in specs:
        logging.info("corpus of %d records", spec.records)
        corpus_dir(args.workdir, spec.records)
        logging.info("running %s", spec.name)
        row = measure_repeated(spec, args.workdir, model, site, args.repeats if spec.records < REPEAT_BELOW else 1)
        results["runs"] = [r for r in results["runs"] if r["name"] != spec.name] + [row]
        logging.info("%s", json.dumps({k: row[k] for k in ("name", "job_wall_seconds", "us_per_record",
                                                           "peak_rss_mib")}))
        results["scaling"] = scaling(results["runs"])
        args.output.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=1) + "\n")
        (args.output / f"{RESULTS_NAME}.md").write_text(render(results))
    print((args.output / f"{RESULTS_NAME}.md").read_text())


if __name__ == "__main__":
    main()
