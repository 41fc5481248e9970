"""What the launcher says at the end of a submitted job, and whether it waits for it."""

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.launch.outcome import failure_line, submitted, waits

WORKER_REPORT = """Pipeline job-1 failed in state FAILED: Traceback (most recent call last):
  File "apache_beam/runners/common.py", line 1498, in process
    return self.do_fn_invoker.invoke_process(windowed_value)
  File "/repo/pipeline/formats/shards.py", line 92, in match_shards
    raise JobConfigError(f"no file matches --input {pattern}")
pipeline.errors.JobConfigError: no file matches --input examples/* [while running 'ListShards/List']
"""


class SubmittedJob:
    """What a runner returns for a job it accepted: an id (Dataflow's result has job_id())."""

    def job_id(self) -> str:
        return "2026-11-29_01_02_03-123"


def test_the_failure_line_is_the_exception_the_worker_raised():
    assert failure_line(WORKER_REPORT) == ("JobConfigError: no file matches --input examples/* "
                                           "[while running 'ListShards/List']")


def test_a_report_without_an_exception_gives_its_last_line():
    assert failure_line("Pipeline job-1 failed in state CANCELLED: unknown error\n") == (
        "Pipeline job-1 failed in state CANCELLED: unknown error")
    assert failure_line("") == "no reason given"


def test_the_launcher_waits_everywhere_but_on_dataflow_unless_told():
    job = SubmittedJob()
    assert waits(None, False, job) and not waits(None, True, job)
    assert waits(True, True, job) and not waits(False, False, job)


def test_a_dataflow_submission_names_the_job_and_its_console_page():
    options = PipelineOptions(["--runner", "DataflowRunner", "--project", "my-project", "--region", "us-central1"])
    lines = submitted(SubmittedJob(), "gs://b/out", options).splitlines()
    assert lines == ["submitted job 2026-11-29_01_02_03-123; gs://b/out/_SUCCESS appears when it has finished",
                     "https://console.cloud.google.com/dataflow/jobs/us-central1/2026-11-29_01_02_03-123"
                     "?project=my-project"]


def test_other_runners_get_no_console_page():
    lines = submitted(SubmittedJob(), "/data/out", PipelineOptions(["--runner", "PortableRunner"])).splitlines()
    assert lines == ["submitted job 2026-11-29_01_02_03-123; /data/out/_SUCCESS appears when it has finished"]
