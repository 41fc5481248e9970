"""Run inside the Airflow virtualenv (not ours): load the DAG like the scheduler does, print the rendered request.

    AIRFLOW_HOME=TMP python airflow_check.py DAGS_FOLDER LOGICAL_DATE OUT_JSON
"""

import json
import sys

from airflow.models import DagBag


def main(dags_folder: str, logical_date: str, out: str) -> None:
    bag = DagBag(dag_folder=dags_folder, include_examples=False)
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    dag = bag.dags["embedding_nightly"]  # get_dag would consult the metadata database
    task = dag.get_task("embed")
    context = {"ds": logical_date, "ds_nodash": logical_date.replace("-", "")}
    body = task.render_template(task.body, context)
    seen = {"operator": type(task).__name__, "schedule": str(dag.schedule_interval), "project": task.project_id,
            "location": task.location, "body": body}
    with open(out, "w") as f:  # not stdout: Airflow prints its own warnings there
        json.dump(seen, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
