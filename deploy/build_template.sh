#!/usr/bin/env bash
# Write the Flex Template spec (launcher image + metadata.json) to gs://$BUCKET/templates/.
set -euo pipefail
source "$(dirname "$0")/env.sh"
gcloud dataflow flex-template build "$TEMPLATE" \
  --project "$PROJECT" \
  --image "$LAUNCHER_IMAGE" \
  --sdk-language PYTHON \
  --metadata-file "$DEPLOY_DIR/flex-template/metadata.json"
echo "template: $TEMPLATE"
