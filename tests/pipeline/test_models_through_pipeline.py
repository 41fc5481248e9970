"""Real and full-size models through the whole job: known answers, backend parity, bert-base-chinese shape."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.pipeline.conftest import read_embeddings, read_manifest

KNOWN_ANSWERS = Path(__file__).resolve().parents[1] / "data" / "minilm_known_answers.json"
PARITY_TEXTS = ["A man is eating food.", "今天天气很好，我们去公园散步吧。", "x", "long " * 400, "Mixed 中文 text"]


def _vectors(output):
    table = read_embeddings(output)
    return table.column("id").to_pylist(), np.array(table.column("embedding").to_pylist(), dtype=np.float32), table


def test_default_model_reproduces_known_answers_through_the_pipeline(run_cli, tmp_path):
    known = json.loads(KNOWN_ANSWERS.read_text())
    corpus = tmp_path / "known.txt"
    corpus.write_text("\n".join(known["texts"]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run_cli("--input", corpus, "--output", out)[0] == 0
    ids, vectors, table = _vectors(out)
    assert ids == [f"known.txt:{i}" for i in range(1, 6)]
    assert table.column("n_tokens").to_pylist() == known["n_tokens"]
    np.testing.assert_allclose(vectors[:, :8], known["first_8_dims"], atol=1e-4)
    np.testing.assert_allclose(vectors @ vectors.T, known["cosine"], atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), known["norms"], atol=1e-5)
    settings = read_manifest(out)["settings"]
    assert (settings["pooling"], settings["normalize"], settings["max_seq_length"]) == ("mean", True, 256)


@pytest.fixture(scope="module")
def parity_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("parity") / "texts.txt"
    path.write_text("\n".join(PARITY_TEXTS) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def transformers_output(parity_corpus, tmp_path_factory):
    from pipeline.cli import main

    out = tmp_path_factory.mktemp("parity-transformers")
    assert main(["--input", str(parity_corpus), "--output", str(out)]) == 0
    return out


@pytest.mark.parametrize("module_fixture", ["minilm_hub_dict", "minilm_hub_list"])
def test_hub_backend_matches_transformers_backend_through_the_pipeline(
    run_cli, request, module_fixture, parity_corpus, transformers_output, tmp_path
):
    module = request.getfixturevalue(module_fixture)
    out = tmp_path / "hub"
    assert run_cli("--input", parity_corpus, "--output", out, "--backend", "hub", "--model", module)[0] == 0
    hub_ids, hub_vectors, hub_table = _vectors(out)
    hf_ids, hf_vectors, hf_table = _vectors(transformers_output)
    assert hub_ids == hf_ids and len(hub_ids) == len(PARITY_TEXTS)
    assert np.abs(hub_vectors - hf_vectors).max() < 1e-5
    assert hub_table.column("n_tokens").to_pylist() == hf_table.column("n_tokens").to_pylist()
    assert hub_table.column("truncated").to_pylist() == [False, False, False, True, False]


@pytest.mark.slow
def test_bert_base_chinese_shaped_model_through_both_backends(run_cli, bert_base_chinese_dir, tmp_path):
    from encoders.export_hub import export_hub_module

    module = tmp_path / "hub-module"
    export_hub_module(str(bert_base_chinese_dir), str(module))
    texts = ["中文手机质量不错", "今天天气很好", "酒店房间干净"]
    corpus = tmp_path / "zh.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    outputs = []
    for backend, model in (("transformers", bert_base_chinese_dir), ("hub", module)):
        out = tmp_path / backend
        assert run_cli("--input", corpus, "--output", out, "--backend", backend, "--model", model)[0] == 0
        ids, vectors, table = _vectors(out)
        assert vectors.shape == (3, 768)
        assert table.column("n_tokens").to_pylist() == [len(t) + 2 for t in texts]
        assert read_manifest(out)["settings"]["dim"] == 768
        outputs.append(vectors)
    assert np.abs(outputs[0] - outputs[1]).max() < 1e-4


def test_a_3000_token_document_is_chunked_or_truncated_with_the_default_model(run_cli, tmp_path):
    words = "the quick brown fox jumps over the lazy dog near the river bank".split()
    document = " ".join(words[i % len(words)] for i in range(2998))  # 2998 word tokens + [CLS]/[SEP]
    corpus = tmp_path / "docs.txt"
    corpus.write_text(f"{document}\nA man is eating food.\n", encoding="utf-8")
    rows = {}
    for mode in ("truncate", "chunk"):
        out = tmp_path / mode
        assert run_cli("--input", corpus, "--output", out, "--long_text", mode)[0] == 0
        ids, vectors, table = _vectors(out)
        rows[mode] = dict(zip(ids, zip(vectors, table.column("n_tokens").to_pylist(),
                                       table.column("truncated").to_pylist(),
                                       table.column("n_chunks").to_pylist(), strict=True), strict=True))
    long_truncated, long_chunked = rows["truncate"]["docs.txt:1"], rows["chunk"]["docs.txt:1"]
    assert long_truncated[1:] == (256, True, 1)
    assert long_chunked[1:] == (3000, False, 14)  # windows of 254 tokens, 31 shared: starts 0, 223, ..., 2899
    assert abs(np.linalg.norm(long_chunked[0]) - 1) < 1e-5
    assert float(long_chunked[0] @ long_truncated[0]) < 0.999  # the rest of the document counts too
    short_truncated, short_chunked = rows["truncate"]["docs.txt:2"], rows["chunk"]["docs.txt:2"]
    assert np.abs(short_truncated[0] - short_chunked[0]).max() < 1e-6 and short_chunked[3] == 1


def test_a_tokenizer_json_model_through_the_job_plain_and_with_prompts(run_cli, tokenizer_json_dir, tmp_path, capsys):
    """BERT or XLM-RoBERTa layers with only a tokenizer.json: the job's vectors are transformers' own, with the
    prompt recorded as a vector setting; search embeds a query with the model's query prompt."""
    from pipeline.search import main as search_main
    from tests.encoders.test_tokenizer_json_models import reference_vectors
    from tests.model_factory import review_lines

    texts = review_lines()[:20] + ["hello world"]
    corpus = tmp_path / "reviews.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    runs = {"plain": (), "named": ("--prompt_name", "document"), "given": ("--prompt", "passage: ")}
    fingerprints = {}
    for name, flags in runs.items():
        out = tmp_path / name
        code, _, err = run_cli("--input", corpus, "--output", out, "--model", tokenizer_json_dir, *flags)
        assert code == 0, err
        ids, vectors, table = _vectors(out)
        order = [int(i.rsplit(":", 1)[1]) - 1 for i in ids]
        expected, lengths = reference_vectors(tokenizer_json_dir, [texts[i] for i in order], 48,
                                              prompt="" if name == "plain" else "passage: ")
        np.testing.assert_allclose(vectors, expected, atol=1e-5)
        assert table.column("n_tokens").to_pylist() == lengths.tolist()
        settings = read_manifest(out)["settings"]
        assert settings.get("prompt") == (None if name == "plain" else "passage: ")
        fingerprints[name] = table.schema.metadata[b"model_fingerprint"]
    assert fingerprints["named"] == fingerprints["given"] != fingerprints["plain"]

    code, _, err = run_cli("--input", corpus, "--output", tmp_path / "cut", "--model", tokenizer_json_dir,
                           "--truncate_dim", "12")
    assert code == 0, err
    ids, vectors, table = _vectors(tmp_path / "cut")
    full, _ = reference_vectors(tokenizer_json_dir, [texts[int(i.rsplit(":", 1)[1]) - 1] for i in ids], 48)
    np.testing.assert_allclose(vectors, full[:, :12] / np.linalg.norm(full[:, :12], axis=1, keepdims=True), atol=1e-5)
    assert table.schema.field("embedding").type.list_size == 12
    assert read_manifest(tmp_path / "cut")["settings"]["dim"] == 12

    capsys.readouterr()
    assert search_main([str(tmp_path / "named"), texts[3], "--k", "1", "--format", "json"]) == 0
    (hit,) = json.loads(capsys.readouterr().out)
    query, _ = reference_vectors(tokenizer_json_dir, [texts[3]], 48, prompt="query: ")
    _, vectors, table = _vectors(tmp_path / "named")
    best = int(np.argmax(vectors @ query[0]))
    assert hit["id"] == table.column("id")[best].as_py()
    assert abs(hit["score"] - float(vectors[best] @ query[0])) < 1e-5
