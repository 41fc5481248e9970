"""Airflow DAG: launch the embedding Flex Template once a day, for that day's logical date.

Copy this file and ../scheduler/launch-body.json (with BUCKET/PROJECT/REGION filled in) into the DAGs
folder (Cloud Composer: gs://<composer bucket>/dags/). Needs apache-airflow-providers-google. Backfills
work: run_date is the DAG run's logical date, so dt=... and {previous_date} follow it.
"""

from __future__ import annotations

import copy
import json
import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow import DAG
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator

BODY_FILE = Path(__file__).with_name("launch-body.json")
PROJECT = os.environ.get("EMBEDDING_PROJECT", "PROJECT")
REGION = os.environ.get("EMBEDDING_REGION", "us-central1")


def launch_body(template: dict) -> dict:
    """The scheduler's launch request, for the DAG run's date (rendered by Airflow's templating)."""
    body = copy.deepcopy(template)
    body["launchParameter"]["jobName"] = "embed-{{ ds_nodash }}"
    body["launchParameter"]["parameters"]["run_date"] = "{{ ds }}"
    return body


with DAG(
    dag_id="embedding_nightly",
    schedule="0 2 * * *",
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=1,  # nights build on each other through --skip_existing
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["embeddings"],
) as dag:
    embed = DataflowStartFlexTemplateOperator(
        task_id="embed",
        project_id=PROJECT,
        location=REGION,
        body=launch_body(json.loads(BODY_FILE.read_text())),
        wait_until_finished=True,  # the task fails when the job fails, so retries and alerts apply
    )
