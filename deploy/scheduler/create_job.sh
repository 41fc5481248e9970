#!/usr/bin/env bash
# Create (or update) a Cloud Scheduler job that launches the Flex Template every night at 02:00 UTC.
# The job writes gs://$BUCKET/embeddings/dt=<run date>/ and reuses the night before (launch-body.json).
# SCHEDULER_SA must be a service account allowed to launch Dataflow jobs (roles/dataflow.admin) and to act
# as the workers' service account (roles/iam.serviceAccountUser).
# LAUNCH_BODY=launch-body-rightfit.json sends the right-fitted request (GPUs on the embedding step alone).
set -euo pipefail
source "$(dirname "$0")/../env.sh"
: "${LAUNCH_BODY:=launch-body.json}"
: "${SCHEDULER_SA:?set SCHEDULER_SA to the service account email Cloud Scheduler calls Dataflow as}"
body="$(sed -e "s|gs://BUCKET/|gs://${BUCKET}/|g" \
            -e "s|REGION-docker.pkg.dev/PROJECT/embedding/worker:0.1.0|${WORKER_IMAGE}|" \
            "$DEPLOY_DIR/scheduler/$LAUNCH_BODY")"
uri="https://dataflow.googleapis.com/v1b3/projects/${PROJECT}/locations/${REGION}/flexTemplates:launch"
action=create
gcloud scheduler jobs describe embed-nightly --location "$REGION" --project "$PROJECT" >/dev/null 2>&1 && action=update
gcloud scheduler jobs "$action" http embed-nightly \
  --project "$PROJECT" --location "$REGION" \
  --schedule "0 2 * * *" --time-zone "Etc/UTC" \
  --uri "$uri" --http-method POST \
  --oauth-service-account-email "$SCHEDULER_SA" \
  --headers "Content-Type=application/json" \
  --message-body "$body"
