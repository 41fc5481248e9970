"""The CLI contract: configuration errors exit 2 with one line before the pipeline starts."""

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from encoders.declare import absolute_path, declared
from pipeline.cli import build_parser, settings_from_args
from pipeline.errors import JobConfigError
from pipeline.settings import SETTINGS_CLASSES, JobSettings

SAMPLE_VALUES = {str: "x-1", int: 3, tuple: ("a/*.txt", "b/*.txt")}
SAMPLE_BY_NAME = {"encoding": "latin-1", "embed_accelerator": "type:nvidia-l4;count:1"}
NEEDS = {"snapshot": ["--skip_existing", "old/*.parquet"]}  # settings that only make sense with another


def _flag_args(item) -> tuple[list[str], object]:
    """Command-line words giving a declared setting a non-default value, and the value expected."""
    flag = f"--{item.flag}"
    if item.kind is bool:
        return [flag], True
    allowed = item.declaration.allowed()
    if allowed:
        value = next(c for c in allowed if c != item.default)
        return [flag, value], value
    value = SAMPLE_BY_NAME.get(item.name, SAMPLE_VALUES[item.kind])
    if item.kind is tuple:
        return [w for v in value for w in (flag, v)], value
    if item.declaration.pattern and item.name not in SAMPLE_BY_NAME:  # a date
        return [flag, "2026-11-25"], "2026-11-25"
    return [flag, str(value)], value


@pytest.mark.parametrize("item", [i for cls in SETTINGS_CLASSES for i in declared(cls) if i.flag],
                         ids=lambda i: i.flag)
def test_every_declared_setting_reaches_the_typed_settings_from_its_flag(item):
    base = {"inputs": ["--input", "in/*.txt"], "output": ["--output", "out"]}
    words, expected = _flag_args(item)
    argv = [w for name, ws in base.items() if name != item.name for w in ws] + words + NEEDS.get(item.name, [])
    args, unknown = build_parser().parse_known_args(argv)
    assert unknown == []
    job, spec = settings_from_args(args, "/launch")
    owner = job if item.name in {i.name for i in declared(JobSettings)} else spec
    kind = item.declaration.path
    if kind:  # a local path is made absolute from the launcher's directory
        expected = (tuple(absolute_path(v, kind, "/launch") for v in expected) if isinstance(expected, tuple)
                    else absolute_path(expected, kind, "/launch"))
    assert getattr(owner, item.name) == expected
    assert item.declaration.help.split(";")[0][:30] in " ".join(build_parser().format_help().split())


def test_negation_flags_set_false_and_default_leaves_the_choice_to_the_model():
    for index, cls in enumerate(SETTINGS_CLASSES):
        for item in (i for i in declared(cls) if i.declaration.negation):
            negation = f"--{item.declaration.negation[0]}"
            args, _ = build_parser().parse_known_args(["--input", "x", "--output", "o", negation])
            assert getattr(settings_from_args(args)[index], item.name) is False
            args, _ = build_parser().parse_known_args(["--input", "x", "--output", "o"])
            assert getattr(settings_from_args(args)[index], item.name) is None


def test_run_date_help_names_every_flag_it_fills():
    """{run_date}/{previous_date} are filled in some flags; --run_date's help must say which."""
    words = ["--input", "i/{run_date}", "--output", "o/{run_date}", "--run_date", "2026-11-25"]
    texts = [i for i in declared(JobSettings) if i.flag and i.kind is str and i.name not in ("output", "run_date")]
    for item in texts:
        allowed = item.declaration.allowed()
        if allowed:
            continue
        args, _ = build_parser().parse_known_args([*words, f"--{item.flag}", "x/{previous_date}"])
        try:
            filled = getattr(settings_from_args(args, "/b")[0], item.name) in ("x/2026-11-24", "/b/x/2026-11-24")
        except JobConfigError:
            continue  # not a path (e.g. --encoding)
        help_text = next(i for i in declared(JobSettings) if i.name == "run_date").declaration.help
        assert filled == (f"--{item.flag}" in help_text), item.flag
    args, _ = build_parser().parse_known_args(words)
    job = settings_from_args(args, "/b")[0]
    assert job.inputs == ("/b/i/2026-11-25",) and job.output == "/b/o/2026-11-25"


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("hello\n")
    (tmp_path / "plain.txt").write_text("x\n")
    (tmp_path / "rows.csv").write_text("doc,body\n1,hello\n")
    (tmp_path / "repeated.tsv").write_text("doc\tbody\tbody\n1\thello\tworld\n")
    pq.write_table(pa.table({"body": [1, 2]}), tmp_path / "numbers.parquet")
    (tmp_path / "garbage.parquet").write_bytes(b"PAR1 this is not parquet")
    (tmp_path / "half-copied-model").mkdir()  # a config and nothing else
    (tmp_path / "half-copied-model" / "config.json").write_text('{"hidden_size": 32, "max_position_embeddings": 64}')
    (tmp_path / "bad-config-model").mkdir()
    (tmp_path / "bad-config-model" / "config.json").write_text("{not json")
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--input", "{tmp}/nothing-*.txt"], "no file matches --input"),
        (["--model", "{tmp}/no-such-model"], "model path not found"),
        (["--model", "{tmp}/half-copied-model"], "no tokenizer in model directory"),
        (["--model", "{tmp}/bad-config-model"], "config.json is not valid JSON"),
        (["--pooling", "sum"], "invalid choice: 'sum'"),
        (["--backend", "onnx"], "invalid choice: 'onnx'"),
        (["--format", "xml"], "invalid choice: 'xml'"),
        (["--encoding", "klingon-8"], "unknown --encoding"),
        (["--max_chars", "0"], "--max_chars must be positive"),
        (["--output", "{tmp}/in.txt/out"], "is not writable"),
        (["--max_seq_length", "100000"], "--max_seq_length must be between 2 and 512"),
        (["--weights", "{tmp}/w.h5"], "weights file not found"),
        (["--text_field", "body"], "but every matched shard is plain text"),
        (["--normalize", "--no_normalize"], "not allowed with argument"),
        (["--input", "{tmp}/rows.csv", "--text_field", "content"], "--text_field 'content' not among its fields"),
        (["--input", "{tmp}/rows.csv", "--text_field", "body", "--id_field", "key"], "--id_field 'key' not among"),
        (["--input", "{tmp}/numbers.parquet", "--text_field", "body"], "is a int64 column, not a string column"),
        (["--input", "{tmp}/repeated.tsv", "--text_field", "body"],
         "repeated.tsv (tsv): --text_field 'body' names 2 of its columns"),
        (["--input", "{tmp}/garbage.parquet"], "not a readable Parquet file"),
        (["--input", "s3://no-such-bucket-here/*.txt"], "s3:// needs the AWS extra"),
        (["--no_such_flag", "1"], "unknown option --no_such_flag"),
        (["--direct_num_workers", "1", "--skip_existing", "{tmp}/a.parquet", "{tmp}/b.parquet", "{tmp}/c.parquet"],
         "unexpected argument {tmp}/b.parquet (2 in all): quote glob patterns"),
        (["--chunk_overlap", "8"], "--chunk_overlap applies only with --long_text chunk"),
        (["--long_text", "chunk", "--chunk_overlap", "254"], "--chunk_overlap must be at least 0 and less than 254"),
        (["--long_text", "split"], "invalid choice: 'split'"),
        (["--records_per_file", "0"], "--records_per_file must be positive"),
        (["--backend", "hub"], "needs a TF Hub URL"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(run_cli, corpus, tmp_path, extra, message):
    args = ["--output", str(tmp_path / "out")] + ([] if "--input" in extra else ["--input", str(corpus)])
    args += [a.replace("{tmp}", str(tmp_path)) for a in extra]  # a repeated --output: the last one wins
    if extra[0] == "--backend" and extra[1] == "hub":
        args += ["--model", "bert-base-chinese"]
    code, out, err = run_cli(*args)
    assert code == 2
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_missing_input_and_output_are_errors(run_cli, tmp_path):
    assert run_cli("--output", tmp_path / "o")[0] == 2
    assert run_cli("--input", tmp_path / "x")[0] == 2


def test_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "--input", str(tmp_path / "none*.txt"), "--output", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: no file matches --input {tmp_path}/none*.txt"]


def _write_bytes_named(directory, name: bytes, data: bytes = b"hello\n") -> None:
    """A file whose name is raw bytes (not necessarily UTF-8), as an old archive or a Latin-1 system leaves them."""
    os.makedirs(os.fsencode(directory), exist_ok=True)
    with open(os.fsencode(directory) + b"/" + name, "wb") as f:
        f.write(data)


def test_an_input_file_name_that_is_not_utf8_exits_2_naming_it_with_the_byte_escaped(run_cli, tiny_bert_dir,
                                                                                     tmp_path):
    _write_bytes_named(tmp_path / "in", b"good.txt")
    _write_bytes_named(tmp_path / "in", b"bad\xffname.txt")
    code, _, err = run_cli("--input", tmp_path / "in" / "*.txt", "--output", tmp_path / "out", "--model",
                           tiny_bert_dir)
    assert code == 2, err
    assert err.startswith(f"error: input file {tmp_path}/in/bad\\xffname.txt: its name is not valid UTF-8")
    assert err.count("\n") == 1
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_a_recorded_setting_that_is_not_utf8_exits_2_naming_the_flag(run_cli, tiny_bert_dir, tmp_path):
    """The manifest records --input as text: a directory given in its undecodable bytes cannot be recorded."""
    directory = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9")
    _write_bytes_named(directory, b"a.txt")
    code, _, err = run_cli("--input", f"{directory}/*.txt", "--output", tmp_path / "out", "--model", tiny_bert_dir)
    assert code == 2, err
    assert err.startswith(f"error: --input {tmp_path}/caf\\xe9/*.txt is not valid UTF-8")
    assert err.count("\n") == 1
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_an_input_glob_the_shell_expanded_reads_every_file_it_named(run_cli, tiny_bert_dir, tmp_path):
    """`--input data/*.txt` unquoted reaches the job as --input followed by each file: all of them are read."""
    names = []
    for n in range(3):
        (tmp_path / f"part-{n}.txt").write_text(f"text {n}\nmore text {n}\n")
        names.append(str(tmp_path / f"part-{n}.txt"))
    code, _, err = run_cli("--input", *names, "--output", tmp_path / "out", "--model", tiny_bert_dir)
    assert code == 0, err
    manifest = json.loads((tmp_path / "out" / "_SUCCESS").read_text())
    assert manifest["counts"]["embedded"] == 6 and len(manifest["shards"]) == 3
