"""Where a run's files live in the artifact bucket (the pilot's local artifacts/ mirrors it).

```
models/<model>/<run_id>/manifest.json                 quantize manifest (the record step's copy)
models/<model>/<run_id>/<training job>/output/model/  the quantized model (SageMaker training output)
models/<model>/<run_id>/reports/                      report.json, report.md, plot, gate.json, review.json,
                                                      review.html (evaluate job)
models/<model>/<run_id>/rollbacks/<endpoint>-<phase>.json   one record per rollback
models/<model>/<run_id>/autoscaling/<endpoint>-<variant>.json   a serving variant's scaling, lifted
models/<model>/<run_id>/quality/<endpoint>-reference.json   the baseline's reference outputs (quality sampler)
models/<model>/<run_id>/capture/<endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl   SageMaker data capture
```
Key patterns (``*_PATTERN``) are what IAM statements scope to.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

MODELS_PREFIX: Final = "models/"
MANIFEST_FILE: Final = "manifest.json"
REPORT_FILE: Final = "report.json"
# The bounded verdict the state machine reads (jobs' evaluate gate writes it beside the report).
GATE_FILE: Final = "gate.json"
# The human review sample (prompts and both variants' outputs) and its self-contained blind A/B
# page, beside the report (jobs/evaluate/review.py writes both).
REVIEW_FILE: Final = "review.json"
REVIEW_PAGE_FILE: Final = "review.html"
REPORTS_DIR: Final = "reports/"
ROLLBACKS_DIR: Final = "rollbacks/"
AUTOSCALING_DIR: Final = "autoscaling/"
# The live-quality sampler's reference: the baseline's outputs and their scores, kept for after promotion.
QUALITY_DIR: Final = "quality/"
# SageMaker data capture of the run's endpoint configs (canary and promoted): SageMaker itself
# appends <endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl under the destination it is given.
CAPTURE_DIR: Final = "capture/"

RUN_OBJECTS_PATTERN: Final = f"{MODELS_PREFIX}*"
MANIFEST_PATTERN: Final = f"{MODELS_PREFIX}*/{MANIFEST_FILE}"
REPORTS_PATTERN: Final = f"{MODELS_PREFIX}*/{REPORTS_DIR}*"
ROLLBACK_RECORDS_PATTERN: Final = f"{MODELS_PREFIX}*/{ROLLBACKS_DIR}*"
AUTOSCALING_RECORDS_PATTERN: Final = f"{MODELS_PREFIX}*/{AUTOSCALING_DIR}*"
QUALITY_REFERENCES_PATTERN: Final = f"{MODELS_PREFIX}*/{QUALITY_DIR}*"
REVIEW_PATTERN: Final = f"{MODELS_PREFIX}*/{REPORTS_DIR}{REVIEW_FILE}"
CAPTURE_PATTERN: Final = f"{MODELS_PREFIX}*/{CAPTURE_DIR}*"


def run_key(model_name: str, run_id: str) -> str:
    """The run's prefix, with its trailing slash (an S3 prefix without one also matches siblings)."""
    return f"{MODELS_PREFIX}{model_name}/{run_id}/"


def manifest_key(model_name: str, run_id: str) -> str:
    return f"{run_key(model_name, run_id)}{MANIFEST_FILE}"


def reports_key(model_name: str, run_id: str) -> str:
    return f"{run_key(model_name, run_id)}{REPORTS_DIR}"


def report_key(model_name: str, run_id: str, file: str = REPORT_FILE) -> str:
    """A file among the run's reports: the report, or ``file`` (``GATE_FILE``, ``REVIEW_FILE``, ...)."""
    return f"{reports_key(model_name, run_id)}{file}"


def quality_reference_key(model_name: str, run_id: str, endpoint: str) -> str:
    """The baseline's reference outputs of a run on one endpoint (written once, during its canary)."""
    return f"{run_key(model_name, run_id)}{QUALITY_DIR}{endpoint}-reference.json"


def model_output_key(model_name: str, run_id: str, training_job: str) -> str:
    """Where SageMaker puts an uncompressed model directory of the run's training job."""
    return f"{run_key(model_name, run_id)}{training_job}/output/model/"


def rollback_record_key(model_name: str, run_id: str, endpoint: str, phase: str) -> str:
    return f"{run_key(model_name, run_id)}{ROLLBACKS_DIR}{endpoint}-{phase}.json"


def autoscaling_record_key(model_name: str, run_id: str, endpoint: str, variant: str) -> str:
    """The scaling setup of a variant whose scalable target this run lifted (and whether it is back)."""
    return f"{run_key(model_name, run_id)}{AUTOSCALING_DIR}{endpoint}-{variant}.json"


def capture_key(model_name: str, run_id: str) -> str:
    """The DataCaptureConfig destination of the run's endpoint configs (a prefix, trailing slash)."""
    return f"{run_key(model_name, run_id)}{CAPTURE_DIR}"


def capture_hour_key(model_name: str, run_id: str, endpoint: str, variant: str, hour: datetime) -> str:
    """Where SageMaker puts one hour of one variant's captured requests: ``.../<endpoint>/<variant>/yyyy/mm/dd/hh/``
    (UTC hours; docs/aws-behaviour.md)."""
    return f"{capture_key(model_name, run_id)}{endpoint}/{variant}/{hour:%Y/%m/%d/%H}/"
