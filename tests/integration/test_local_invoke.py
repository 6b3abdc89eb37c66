"""`python -m local_stack invoke` (sam local invoke without Docker) and the env files `make local`
writes: `.local/env` (everything a function or worker needs) and `.local/client.env` (a client's only),
both safe to source in bash."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from local_stack.template import ROOT

pytestmark = pytest.mark.integration


def sourced(path) -> dict[str, str]:
    """The variables bash has after `set -a; . FILE; set +a`, in a clean environment."""
    script = f'set -a; . {path}; set +a; python3 -c "import json, os; print(json.dumps(dict(os.environ)))"'
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", script],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stderr == ""
    return json.loads(done.stdout)


def test_local_env_sourced_in_bash_gives_back_every_value_exactly(stack, tmp_path):
    # Given the env file the stack writes (SCALING_STEPS holds < and >, which bash reads as redirections)
    path = stack.write_env(tmp_path / "env")
    expected = stack.env | stack.worker_env | {"MISTERSMITH_API_URL": stack.api_url}
    assert "<=" in expected["SCALING_STEPS"]
    # When it is sourced / Then every variable has exactly its value
    values = sourced(path)
    assert {name: values.get(name) for name in expected} == expected


def test_client_env_holds_only_what_a_client_needs(stack, tmp_path):
    # Given the client's env file / When it is sourced
    values = sourced(stack.write_client_env(tmp_path / "client.env"))
    # Then it points the client at the API and sets nothing that would send `aws` or `sam` to moto
    assert values["MISTERSMITH_API_URL"] == stack.api_url
    assert not [name for name in values if name.startswith("AWS_")]


def invoke(function: str, event: str, env_file) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "local_stack",
            "invoke",
            function,
            "-e",
            f"events/{event}",
            "--env-file",
            str(env_file),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_invoke_runs_a_handler_on_an_event_file_against_the_stack_and_prints_its_return_value(
    stack, tmp_path
):
    # Given the running stack's env file
    env_file = stack.write_env(tmp_path / "env")
    # When the intake function is invoked with the health event, by its short name and by its logical id
    for name in ("intake", "IntakeFunction"):
        done = invoke(name, "intake_health.json", env_file)
        # Then stdout is the handler's return value (an API Gateway proxy response)
        assert done.returncode == 0, done.stderr
        response = json.loads(done.stdout)
        assert response["statusCode"] == 200
        assert json.loads(response["body"])["status"] == "ok"


def test_invoke_of_the_router_routes_the_sample_event_on_the_stack(stack, tmp_path):
    done = invoke("router", "router_worker_task.json", stack.write_env(tmp_path / "env"))
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)) == {"task_id", "outcome"}


def test_invoke_without_a_running_stack_says_how_to_start_one(tmp_path):
    done = invoke("router", "router_worker_task.json", tmp_path / "missing")
    assert done.returncode == 2
    assert "make local" in done.stderr
