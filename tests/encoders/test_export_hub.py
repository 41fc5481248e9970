import subprocess
import sys

import numpy as np

from encoders import build_encoder, resolve_spec
from encoders.export_hub import main


def test_exported_module_carries_vocab_and_lowercasing(tiny_hub_dir, tiny_bert_dir):
    import tensorflow_hub as hub

    layer = hub.KerasLayer(str(tiny_hub_dir))
    module = layer.resolved_object
    vocab = module.vocab_file.asset_path.numpy().decode()
    assert open(vocab, encoding="utf-8").read() == (tiny_bert_dir / "vocab.txt").read_text(encoding="utf-8")
    assert bool(module.do_lower_case.numpy()) is True
    assert len(layer.trainable_weights) == 0 and len(layer.non_trainable_weights) > 0


def test_exported_tiny_model_matches_its_source(tiny_hub_dir, tiny_bert_dir):
    texts = ["今天天气很好", "hello world", "天" * 100]
    hub = build_encoder(resolve_spec(backend="hub", model=str(tiny_hub_dir)))
    hf = build_encoder(resolve_spec(model=str(tiny_bert_dir)))
    assert np.abs(hub.encode(texts).vectors - hf.encode(texts).vectors).max() < 1e-5


def test_cli_exits_2_with_one_line_when_the_model_is_missing(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "missing"), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model path not found") and "\n" not in err


def test_cli_writes_a_loadable_module(tiny_bert_dir, tmp_path):
    out = tmp_path / "module"
    proc = subprocess.run(
        [sys.executable, "-m", "encoders.export_hub", "--model", str(tiny_bert_dir), "--output", str(out),
         "--signature", "list"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    encoder = build_encoder(resolve_spec(backend="hub", model=str(out)))
    assert encoder.signature_family == "list" and encoder.dim == 32
