"""Right fitting on Dataflow: the --embed_accelerator hint's form, what it must not be combined with, hints of a job.

`--embed_accelerator` becomes Beam's `accelerator` resource hint on the embedding step alone
(`pipeline.stages.graph.build_pipeline`), so Dataflow runs that step on GPU workers and every other step
(listing, the key pass, reading, the commit) on the default workers. Beam keeps a hint on the
environment a transform runs in (`Environment.resource_hints`, URN `beam:resources:accelerator:v1`);
a hinted transform points at its own environment, so a built job can be read back to see which
steps carry which hints (`hinted_steps`). Plain functions over plain values and protos: no Beam import.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.errors import JobConfigError

logger = logging.getLogger(__name__)

# Dataflow's accelerator hint, "type:GPU_TYPE;count:GPU_COUNT;machine_type:MACHINE_TYPE;CONFIGURATION_OPTIONS"
# (cloud.google.com/dataflow/docs/guides/right-fitting), with type and count first as in every example there.
# Options are bare words (install-nvidia-driver, use_nvidia_mps) or key:value pairs (machine_type:...).
ACCELERATOR_PATTERN = r"type:[a-z0-9-]+;count:[1-9][0-9]*(;[a-z0-9_-]+(:[a-z0-9-]+)?)*"
ACCELERATOR_EXAMPLE = "type:nvidia-l4;count:1;machine_type:g2-standard-8;install-nvidia-driver"
# Compute Engine's accelerator-optimized families come with GPUs attached: such a default pool would
# hold GPUs in every step, which is what right fitting avoids.
_GPU_MACHINE_FAMILIES = ("a2-", "a3-", "g2-")


@dataclass(frozen=True)
class Accelerator:
    """The parts of an accelerator hint."""

    gpu_type: str
    count: int
    machine_type: str | None
    options: tuple[str, ...]  # everything else, in the order given (e.g. install-nvidia-driver)


def parse_accelerator(text: str) -> Accelerator:
    """The hint's parts; raises JobConfigError (one line) when text is not of the form Dataflow takes."""
    if not re.fullmatch(ACCELERATOR_PATTERN, text):
        raise JobConfigError(f"--embed_accelerator must look like {ACCELERATOR_EXAMPLE} (type and count first, "
                             f"lower case, no spaces or quotes), got {text!r}")
    items = text.split(";")
    keys = [item.split(":", 1)[0] for item in items]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise JobConfigError(f"--embed_accelerator names {', '.join(repeated)} more than once: {text!r}")
    pairs = dict(item.split(":", 1) for item in items if ":" in item)
    named = ("type", "count", "machine_type")
    return Accelerator(pairs["type"], int(pairs["count"]), pairs.get("machine_type"),
                       tuple(item for item, key in zip(items, keys, strict=True) if key not in named))


def check_placement(accelerator: str | None, *, local: bool, service_options: Iterable[str] = (),
                    resource_hints: Iterable[str] = (), machine_type: str | None = None) -> None:
    """Refuse what cannot go with --embed_accelerator; warn about what probably should not.

    service_options, resource_hints and machine_type are the Beam options of the same names.
    Dataflow's right-fitting guide says not to use the worker_accelerator service option with
    resource hints; a pipeline-wide accelerator hint (--resource_hints accelerator=...) would put
    every step on GPU workers. Both raise JobConfigError. A local run does not apply the hint
    (see `pipeline.stages.graph.build_pipeline`): it is logged, not refused, so the nightly command can be
    tried locally as it is.
    """
    if not accelerator:
        return
    if any(option.startswith("worker_accelerator=") for option in service_options):
        raise JobConfigError("--embed_accelerator gives GPUs to the embedding step alone; do not also pass "
                             "worker_accelerator in --dataflow_service_options (Dataflow's right-fitting guide "
                             "says not to combine them)")
    if any(hint.split("=", 1)[0] == "accelerator" for hint in resource_hints):
        raise JobConfigError("--resource_hints accelerator=... asks for GPUs in every step; with --embed_accelerator "
                             "give only the embedding step's (other hints, e.g. min_ram, are fine)")
    if machine_type and machine_type.startswith(_GPU_MACHINE_FAMILIES):
        logger.warning("--machine_type %s comes with GPUs attached, so every step would hold one; with "
                       "--embed_accelerator give the default workers a CPU machine type (e.g. n2-standard-2) and "
                       "the GPU machine as the hint's machine_type", machine_type)
    if local:
        logger.warning("--embed_accelerator applies to distributed runners (Dataflow); this local run embeds on "
                       "this machine and ignores it")


def hinted_steps(proto_pipeline) -> dict[tuple[str, str], list[str]]:
    """{(hint name, value): sorted top-level steps} of a built job (a Beam `Pipeline` proto).

    A step carries a hint when any of its transforms runs in an environment holding it. The
    name is the hint's URN's own part (`beam:resources:accelerator:v1` -> `accelerator`).
    """
    components = proto_pipeline.components
    found: dict[tuple[str, str], set[str]] = {}
    for transform in components.transforms.values():
        if not transform.environment_id or transform.unique_name.startswith("ref_"):
            continue
        for urn, value in components.environments[transform.environment_id].resource_hints.items():
            name = urn.split(":")[2] if urn.count(":") >= 3 else urn
            found.setdefault((name, value.decode("ascii", "replace")), set()).add(transform.unique_name.split("/")[0])
    return {key: sorted(steps) for key, steps in sorted(found.items())}


def describe_hints(proto_pipeline) -> str:
    """One clause for the dry-run summary: which steps carry which resource hints ("" when none do)."""
    hinted = hinted_steps(proto_pipeline)
    if not hinted:
        return ""
    parts = [f"{name} on {', '.join(steps)} ({value})" for (name, value), steps in hinted.items()]
    return "resource hints: " + "; ".join(parts)
