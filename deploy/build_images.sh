#!/usr/bin/env bash
# Build and push the GPU worker image and the Flex Template launcher image (Cloud Build, no local Docker).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$REPO_DIR"
gcloud artifacts repositories describe "$REPOSITORY" --location "$REGION" --project "$PROJECT" >/dev/null 2>&1 \
  || gcloud artifacts repositories create "$REPOSITORY" --repository-format docker --location "$REGION" --project "$PROJECT"
cat > /tmp/embedding-cloudbuild.yaml <<YAML
steps:
- name: gcr.io/cloud-builders/docker
  args: [build, -f, deploy/worker/Dockerfile, -t, ${WORKER_IMAGE}, .]
- name: gcr.io/cloud-builders/docker
  args: [push, ${WORKER_IMAGE}]
- name: gcr.io/cloud-builders/docker
  args: [build, -f, deploy/flex-template/Dockerfile, --build-arg, WORKER_IMAGE=${WORKER_IMAGE}, -t, ${LAUNCHER_IMAGE}, .]
images: [${WORKER_IMAGE}, ${LAUNCHER_IMAGE}]
options: {machineType: E2_HIGHCPU_8, diskSizeGb: 100}
timeout: 3600s
YAML
gcloud builds submit --project "$PROJECT" --region "$REGION" --config /tmp/embedding-cloudbuild.yaml .
