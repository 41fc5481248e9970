#!/usr/bin/env bash
# Launch one run of the Flex Template on GPU workers.
#   deploy/launch.sh 'gs://B/corpus/*.jsonl.gz' 'gs://B/embeddings/dt={run_date}' [NAME=VALUE ...]
# NAME=VALUE are template parameters (the CLI's flags without dashes, e.g. id_field=id snapshot=true).
# FLAGS_FILE=deploy/dataflow-gpu-rightfit.flags gives GPUs to the embedding step alone (right fitting).
set -euo pipefail
source "$(dirname "$0")/env.sh"
: "${FLAGS_FILE:=$DEPLOY_DIR/dataflow-gpu.flags}"
input="$1"; output="$2"; shift 2
parameters=(--parameter "input=$input" --parameter "output=$output")
for p in "$@"; do parameters+=(--parameter "$p"); done
body="$(cd "$REPO_DIR" && python -m pipeline.template launch-body \
  --job_name "embed-$(date -u +%Y%m%d-%H%M%S)" --template "$TEMPLATE" --temp_location "$TEMP_LOCATION" \
  --sdk_container_image "$WORKER_IMAGE" --flags "$FLAGS_FILE" "${parameters[@]}")"
# The REST call takes every GPU setting from the flags file, as the scheduler and the DAG do.
curl -sS -X POST -H "Authorization: Bearer $(gcloud auth print-access-token)" -H "Content-Type: application/json" \
  "https://dataflow.googleapis.com/v1b3/projects/${PROJECT}/locations/${REGION}/flexTemplates:launch" \
  --data "$body"
