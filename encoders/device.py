"""Accelerator set-up, done once per process before a model touches the device."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def configure_gpus() -> list[str]:
    """Turn on memory growth on every visible GPU; returns their names.

    TensorFlow otherwise reserves nearly all GPU memory for the first model, so a second
    worker process (or a second model copy) on the same GPU could not start. Must run
    before the first op is placed on a GPU; later calls are harmless no-ops.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # the device is already initialised; growth was set earlier or cannot be
            logger.debug("memory growth for %s not changed: already initialised", gpu.name)
    if gpus:
        logger.info("inference on %d GPU(s) with memory growth: %s", len(gpus), ", ".join(g.name for g in gpus))
    return [gpu.name for gpu in gpus]
