#!/usr/bin/env bash
# Pins an MLflow model for a BUILD file: prints an `mlflow_artifacts` target (every file's sha256 and size,
# the run, its parameters and metrics) for a run, a registered model version, or an alias resolved once.
#
#   MLFLOW_TRACKING_URI=https://mlflow.example.com build-support/mlflow-pin.sh models:/fraud-detector@champion
#   build-support/mlflow-pin.sh runs:/<run_id>/model --name checkpoint --tracking-uri https://...
#
# Credentials come from MLflow's variables (MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and
# MLFLOW_TRACKING_PASSWORD). Standard library only: any python3 ≥ 3.9 runs it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python3 -m aegis_plugin.core.mlflow.pin "$@"
