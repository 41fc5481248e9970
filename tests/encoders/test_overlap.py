"""Host work (tokenize, pad) for the next groups runs while the device computes the current one."""

import threading
import time

import numpy as np
import pytest

from encoders import build_encoder, resolve_spec
from encoders.base import prefetch

TEXTS = ["今天天气很好", "hello world", "这本书写得很好，值得一读。", "short", "一" * 40, "mixed 中文 and English"]


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir):
    return build_encoder(resolve_spec(model=str(tiny_bert_dir)))


class Recorder:
    """Wraps an encoder: the device call sleeps like a GPU call (releasing the GIL); events are time-stamped."""

    def __init__(self, encoder, device_seconds: float) -> None:
        self.encoder = encoder
        self.device_seconds = device_seconds
        self.events: list[tuple[float, str, int, str]] = []
        self._lock = threading.Lock()
        self._prepare, self._run = encoder.prepare, encoder.run

    def note(self, what: str, group: int) -> None:
        with self._lock:
            self.events.append((time.perf_counter(), what, group, threading.current_thread().name))

    def prepare(self, texts):
        group = int(texts[0].split("|")[0])
        self.note("prepare start", group)
        prepared = self._prepare(texts)
        self.note("prepare end", group)
        return prepared

    def run(self, prepared):
        group = prepared.group
        self.note("run start", group)
        time.sleep(self.device_seconds)
        result = self._run(prepared)
        self.note("run end", group)
        return result


def _groups(n: int) -> list[list[str]]:
    return [[f"{g}|{t}" for t in TEXTS] for g in range(n)]


def test_next_groups_are_prepared_on_another_thread_while_the_device_runs(encoder, monkeypatch):
    recorder = Recorder(encoder, device_seconds=0.2)

    def prepare(texts):
        prepared = recorder.prepare(texts)
        prepared.group = int(texts[0].split("|")[0])
        return prepared

    monkeypatch.setattr(encoder, "prepare", prepare)
    monkeypatch.setattr(encoder, "run", recorder.run)
    results = list(encoder.encode_groups(_groups(6), depth=2))
    assert len(results) == 6 and not any(isinstance(r, Exception) for r in results)
    at = {(what, group): when for when, what, group, _ in recorder.events}
    threads = {(what, group): name for _, what, group, name in recorder.events}
    assert threads[("prepare start", 1)] != threads[("run start", 0)]  # a host thread, not the device's
    assert at[("prepare end", 1)] < at[("run end", 0)]  # group 1 was ready while group 0 was on the device
    prepared_during_first_run = [g for g in range(6) if at[("prepare start", g)] < at[("run end", 0)]]
    assert 2 <= len(prepared_during_first_run) <= 2 + 2  # bounded: at most depth ahead, plus one being made


def test_grouped_results_equal_one_call_per_group(encoder):
    groups = _groups(3)
    streamed = list(encoder.encode_groups(groups))
    for group, result in zip(groups, streamed, strict=True):
        alone = encoder.encode(group)
        assert np.abs(result.vectors - alone.vectors).max() < 1e-6
        assert result.n_tokens.tolist() == alone.n_tokens.tolist()
        assert set(result.seconds) == {"tokenize", "batch", "wait", "device", "copy"}


def test_a_failing_group_comes_back_as_its_exception_and_the_others_go_on(encoder, monkeypatch):
    real_prepare = encoder.prepare

    def prepare(texts):
        if any("POISON" in t for t in texts):
            raise ValueError("cannot tokenize this group")
        return real_prepare(texts)

    monkeypatch.setattr(encoder, "prepare", prepare)
    results = list(encoder.encode_groups([["a"], ["POISON"], ["b", "c"]]))
    assert isinstance(results[1], ValueError)
    assert [len(r.vectors) for r in (results[0], results[2])] == [1, 2]


def test_prefetch_stays_bounded_and_stops_when_the_consumer_stops():
    made = []

    def work(item):
        made.append(item)
        return item

    stream = prefetch(range(1000), work, depth=3)
    assert next(stream) == 0
    time.sleep(0.2)
    assert len(made) <= 1 + 3 + 1
    stream.close()  # the consumer gives up early: the producer thread must exit, not block forever
    time.sleep(0.2)
    assert len(made) <= 1 + 3 + 2
    assert not any(t.name == "encoder-prefetch" and t.is_alive() for t in threading.enumerate())


def test_batches_run_two_at_a_time_and_come_back_in_order(tiny_bert_dir):
    """On a CPU build_encoder sets two device streams; results must not depend on them."""
    texts = [("今天天气很好" * (i % 7 + 1)) + f" line {i}" for i in range(40)]
    encoder = build_encoder(resolve_spec(model=str(tiny_bert_dir), max_batch_size=2))
    encoder.device_streams = 1
    one_at_a_time = encoder.encode(texts)
    active, most = [0], [0]
    lock = threading.Lock()
    embed = encoder.embed_token_ids

    def counted(ids, mask):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.02)  # long enough for the other stream to start
        try:
            return embed(ids, mask)
        finally:
            with lock:
                active[0] -= 1

    encoder.embed_token_ids = counted
    encoder.device_streams = 2
    two_at_a_time = encoder.encode(texts)
    assert most[0] == 2 and two_at_a_time.batches == one_at_a_time.batches > 10
    assert np.abs(two_at_a_time.vectors - one_at_a_time.vectors).max() < 1e-6
    np.testing.assert_array_equal(two_at_a_time.n_tokens, one_at_a_time.n_tokens)
