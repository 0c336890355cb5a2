"""``python -m jobs.evaluate``: the evaluate job's entry point (the processing job's
ContainerEntrypoint in stacks/pipeline_workflow.py and containers/evaluate/Dockerfile)."""

from jobs.evaluate.job import main

raise SystemExit(main())
