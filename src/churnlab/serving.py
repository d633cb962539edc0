"""The ``serve`` command: MLflow's scoring server for a champion, in this environment.

``mlflow models serve --env-manager local`` starts uvicorn by its name, so it fails with
"exec: uvicorn: not found" unless the virtualenv's ``bin`` is on ``PATH`` (as when churnlab runs
from ``.venv/bin/churnlab`` without an activated environment). :func:`command` puts the running
interpreter's folder first on ``PATH``, points MLflow at the tracking store and resolves the
champion, so the server runs exactly the registered version.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from churnlab import tracking
from churnlab.config import Params
from churnlab.errors import ChurnlabError


def command(
    params: Params, task: str, host: str, port: int
) -> tuple[list[str], dict[str, str], str]:
    """The server's command line, environment and the model URI it serves.

    Raises
    ------
    ChurnlabError
        If the task has no champion.
    """
    uri = tracking.configure(params.tracking)
    found = tracking.champion_version(params.tracking, task)
    if found is None:
        raise ChurnlabError(
            f"no champion for {tracking.registered_name(params.tracking, task)} in {uri}: run "
            "`churnlab train` first"
        )
    name, version, _ = found
    model_uri = f"models:/{name}/{version}"
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MLFLOW_TRACKING_URI"] = uri
    cmd = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
        "--env-manager", "local", "--host", host, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    return cmd, env, f"{name} v{version}"


def run(cmd: list[str], env: dict[str, str]) -> int:
    """Run the server in the foreground; returns its exit code (130 after Ctrl-C).

    Ctrl-C and SIGTERM stop the server and its workers too (its whole process group), so no
    server is left listening after churnlab exits.
    """
    child = subprocess.Popen(cmd, env=env, start_new_session=True)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return child.wait()
    except KeyboardInterrupt:
        _stop_group(child)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_group(child: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
