"""Make the AWS calls of a workflow test behave like AWS: request validation, IAM and Step Functions error names.

moto is lenient where AWS is not: its Step Functions executor builds SDK clients with
``parameter_validation=False``; botocore's own validation skips the service model's max length,
pattern, enum and numeric range; moto authorizes nothing and names SDK errors its own way.
This package puts those checks back, for test code only:

- :mod:`.requests`: ``check_request`` (botocore's validation plus the constraints AWS checks) and
  ``check_exact_member_names`` (Step Functions' case-sensitive PascalCase parameter names).
- :mod:`.errors`: ``step_functions_error`` / ``step_functions_cause`` (how Step Functions names an SDK error).
- :mod:`.iam`: ``policies_of_role``, ``PolicyEvaluator``, ``required_authorizations``.
- :mod:`.hook`: ``install`` (patches ``BaseClient._make_api_call``), ``acting_as`` and
  ``install_step_functions_principal`` (the state machine's role for every call moto's executor makes).

Every behaviour encoded here has a row in docs/aws-behaviour.md ("Request validation, IAM and
error names") with its AWS source.
"""
