"""The whole job on a JSON Lines shard with a record nested 100,000 levels deep: one dead letter, not a crash."""

import json

from tests.pipeline.conftest import read_dead_letters, read_embeddings, read_manifest


def test_a_deeply_nested_record_is_one_invalid_json_dead_letter(run_cli, tiny_bert_dir, tmp_path):
    deep = '{"id": "deep", "text": "x", "n": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines = [json.dumps({"id": "a", "text": "hello"}), deep, json.dumps({"id": "b", "text": "今天"}),
             '{"a":' * 100_000 + "1" + "}" * 100_000, json.dumps({"id": "c", "text": "world"})]
    (tmp_path / "docs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    code, _, err = run_cli("--input", tmp_path / "docs.jsonl", "--output", out, "--model", tiny_bert_dir,
                           "--id_field", "id", "--text_field", "text")
    assert code == 0, err[-2000:]
    assert read_embeddings(out).column("id").to_pylist() == ["a", "b", "c"]
    dead = read_dead_letters(out)
    assert [(d["source"], d["line"], d["reason"]) for d in dead] == [
        ("docs.jsonl", 2, "invalid_json"), ("docs.jsonl", 4, "invalid_json")]
    assert all("nested too deeply" in d["detail"] for d in dead)
    assert read_manifest(out)["counts"] == {"read": 5, "embedded": 3, "skipped": 0, "failed": 2}
