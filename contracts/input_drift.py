"""The input-drift metrics: what the drift function publishes and the drift alarms read, named once.

The drift function (lambda/input_drift/) compares the prompts captured on a canaried or promoted
endpoint with the calibration set its model was quantized with (contracts/prompt_drift.py) and
publishes both named statistics, one datapoint per scheduled check, only when the comparison is
judged (at least ``prompt_drift.MIN_PROMPTS`` prompts on both sides). The alarms
(stacks/input_drift_monitoring.py) notify; they never roll back: drift says the calibration set no
longer looks like the traffic, not that the model got worse.
"""

from __future__ import annotations

from typing import Final

from contracts.prompt_drift import LENGTH_KS_THRESHOLD, TOKEN_JSD_THRESHOLD

NAMESPACE: Final = "LLMQ/InputDrift"
# Metric name -> (the statistic in contracts/prompt_drift.py, its threshold).
LENGTH_KS_METRIC: Final = "PromptLengthKS"
WORD_JSD_METRIC: Final = "PromptTokenJSD"
THRESHOLDS: Final = {LENGTH_KS_METRIC: LENGTH_KS_THRESHOLD, WORD_JSD_METRIC: TOKEN_JSD_THRESHOLD}
# Exactly this dimension: the endpoint (the model behind it is the run its tags name).
ENDPOINT_DIMENSION: Final = "EndpointName"
UNIT: Final = "None"
# Alarm name suffix per metric: <endpoint>-input-drift-<suffix>.
ALARM_SUFFIXES: Final = {LENGTH_KS_METRIC: "length", WORD_JSD_METRIC: "words"}


def dimensions(endpoint: str) -> list[dict[str, str]]:
    return [{"Name": ENDPOINT_DIMENSION, "Value": endpoint}]


def alarm_name(endpoint: str, metric: str) -> str:
    return f"{endpoint}-input-drift-{ALARM_SUFFIXES[metric]}"
