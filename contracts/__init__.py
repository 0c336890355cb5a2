"""The facts more than one unit of the project relies on, each defined once.

Imported by the CDK app (stacks/), bundled into every Lambda asset at synth
(stacks/python_function.py copies this package beside the function's own files)
and copied into each job image. Standard library and pydantic only; it imports
nothing else of this project (tests/contracts/test_import_rules.py).

- ``endpoint_tags``: the endpoint tags and phases the state machine, the canary
  guard and the rollback function read and write; the variant names.
- ``alarm_signals``: which alarms exist per endpoint, their names, which roll back.
- ``artifact_layout``: where a run's files live in the artifact bucket.
- ``support_table``: algorithm x scheme pairs, grouped schemes, group sizes,
  instance families.
- ``function_settings``: each function's environment, written by the stack and
  parsed by the function from one model.
"""
