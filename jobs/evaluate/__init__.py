"""The evaluate job (a SageMaker processing job; ``python -m jobs.evaluate``) and its library.

- ``job``: arguments, the run, the failure file; ``__main__`` runs it;
- ``measure``: fidelity (perplexity, greedy agreement) and speed; ``models``: what a model
  directory says; ``fidelity``: greedy agreement, weight bytes;
- ``engine_fidelity``: perplexity from the serving engine's prompt log-probabilities;
- ``load_test``: the serving client (LiteLLM, SageMaker variants) and its load generator;
- ``gate``, ``cost`` (with ``instance_prices.json``), ``stats``, ``report``, ``assemble``: the
  decision, the price of a token, percentiles, report.md/performance.png, report.json/gate.json;
- ``review``, ``review_page`` (with ``review_page.html``): the human review sample review.json and
  its blind A/B page review.html; ``review_summary``: verdict files -> counts and a go/no-go
  (``python -m jobs.evaluate.review_summary``).

What the pilot uses is re-exported below, so it reads the evaluate job through one surface.
Every module keeps torch, transformers and litellm imports inside functions: importing this
package costs only the standard library.
"""

from jobs.evaluate.assemble import build_report, json_safe, write_report
from jobs.evaluate.cost import PriceTable, PriceTableError
from jobs.evaluate.engine_fidelity import DEFAULT_CHUNK_CHARS, engine_fidelity, post_completion
from jobs.evaluate.fidelity import DEFAULT_PROMPTS, decode_outputs, greedy_outputs
from jobs.evaluate.gate import GateConfigError, Thresholds, Workload
from jobs.evaluate.job import DEFAULT_CONCURRENCY, DEFAULT_MEASURED_INSTANCE
from jobs.evaluate.load_test import Target
from jobs.evaluate.measure import (
    fidelity_section,
    greedy_section,
    measure_model_fidelity,
    measure_performance,
    performance_section,
    preflight,
    requests_for,
    served_greedy_text,
    words,
)
from jobs.evaluate.models import ModelInfo
from jobs.evaluate.report import PERF_HEADER, side_by_side_rows, text_table
from jobs.evaluate.review import build_review

__all__ = [
    "DEFAULT_CHUNK_CHARS",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MEASURED_INSTANCE",
    "DEFAULT_PROMPTS",
    "PERF_HEADER",
    "GateConfigError",
    "ModelInfo",
    "PriceTable",
    "PriceTableError",
    "Target",
    "Thresholds",
    "Workload",
    "build_report",
    "build_review",
    "decode_outputs",
    "engine_fidelity",
    "fidelity_section",
    "greedy_outputs",
    "greedy_section",
    "json_safe",
    "measure_model_fidelity",
    "measure_performance",
    "performance_section",
    "post_completion",
    "preflight",
    "requests_for",
    "served_greedy_text",
    "side_by_side_rows",
    "text_table",
    "words",
    "write_report",
]
