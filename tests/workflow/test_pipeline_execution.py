"""Executed scenarios: the synthesized state machine runs in moto; assertions are on the resources."""

from __future__ import annotations

from tests.workflow.harness import run_execution


def test_happy_path_debug(account):
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="happy")
    print(execution.status, execution.error, execution.cause)
    print(execution.states_entered())
    assert execution.status == "SUCCEEDED"
