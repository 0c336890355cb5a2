"""Job code that runs inside the SageMaker containers and in the local pilot.

Modules here must not import the CDK app (stacks/) and must keep their heavy imports
(torch, transformers, llmcompressor) inside functions where a pure-Python caller
(a Lambda, the pilot driver) reuses them.
"""
