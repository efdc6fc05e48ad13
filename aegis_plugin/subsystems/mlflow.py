"""Where `mlflow_artifacts` targets are downloaded from: an MLflow tracking server."""
from __future__ import annotations

from pants.option.option_types import StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import help_text


class MlflowSubsystem(Subsystem):
    options_scope = "aegis-mlflow"
    name = "Aegis MLflow"
    help = help_text(
        """
        The MLflow tracking server that `mlflow_artifacts` targets are fetched from. Only a build that does
        not find the pinned files in the local or remote cache talks to it. Credentials come only from
        MLflow's own environment variables, `MLFLOW_TRACKING_TOKEN` (a bearer token) or
        `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` (basic auth): they reach no option, cache
        key, log or output.
        """
    )

    tracking_uri = StrOption(
        default=None,
        help=help_text(
            """
            The tracking server's URL (`https://mlflow.example.com`), without credentials. Recorded in the
            images' provenance, so set it in pants.toml for the whole repository. `MLFLOW_TRACKING_URI`, when
            set, overrides where this machine downloads from (e.g. an internal address in CI) and is not
            recorded.
            """
        ),
    )
