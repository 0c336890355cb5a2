"""Alarms, dashboard rows and deployment guardrails for one canaried SageMaker endpoint.

Alarm names follow docs/contracts.md (``<endpoint>-<variant>-<signal>`` and
``<endpoint>-canary``): the rollback function finds the endpoint from the name
and the pipeline's bake loop reads the composite by name.

Why these alarms:
- SageMaker publishes endpoint metrics per minute and CloudWatch evaluates every
  alarm once a minute over its last ``evaluation_periods`` periods, needing
  ``datapoints_to_alarm`` breaching ones. The default (MonitoringThresholds) is one
  5-minute period, 1 of 1: a window that slides by a minute, so a noisy minute is
  diluted by four others and a real regression fires within a few minutes; chosen
  by simulation (benchmarks/alarm_tuning.py, docs/benchmarks.md).
- Error rates and the latency ratio only count periods with at least
  ``min_invocations`` requests per variant; a canary at 5 % of a quiet endpoint
  would otherwise be judged on a handful of requests.
- Missing data is not breaching: no traffic is not a regression, and after
  promotion the baseline variant (and with it the ratio) disappears.
- The serving production variant keeps its own name (``StageConfig.serving_variant``):
  alarms named ``<endpoint>-baseline-<signal>`` watch ``VariantName=<serving_variant>``
  (the name keeps the role word), ``<endpoint>-candidate-<signal>`` watch ``candidate``.
- During a canary only the candidate's alarms (and the composite over them) roll
  back; after promotion the serving variant runs the promoted model, so its
  alarms roll back too (the rollback function decides by the endpoint's phase).
- The absolute ``latency-p95`` alarms only notify: an LLM's ModelLatency grows with
  the length of its output, so a threshold on whole generations would roll back
  long completions. The candidate/baseline ratio is the latency rollback trigger.
- ``quality`` reads ``LLMQ/Quality`` ``PerplexityIncreasePercent`` of the variant, which the
  quality sampler publishes (stacks/quality_sampler_function.py; names, dimensions and unit from
  contracts/live_quality.py): the candidate's during a canary, the serving variant's for a while
  after promotion. It rolls back; the sampler's other metrics are graphed, not alarmed on.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from contracts.alarm_signals import (
    NOTIFY_ONLY_SIGNALS,
    ROLE_BASELINE,
    ROLE_CANDIDATE,
    ROLLBACK_SIGNALS,
    alarm_name,
    composite_alarm_name,
)
from contracts.endpoint_tags import DEFAULT_SERVING_VARIANT
from contracts.live_quality import DIMENSIONS, METRICS, NAMESPACE, PERPLEXITY_INCREASE, MetricSpec
from stacks.config import MonitoringThresholds
from stacks.deployment_guardrails import guardrail_deployment_config

# The alarm roles, signals and names are the contracts package's (contracts/alarm_signals.py):
# the rollback function parses these names back and the validate function lists them.
BASELINE = ROLE_BASELINE
CANDIDATE = ROLE_CANDIDATE
SAGEMAKER_NAMESPACE = "AWS/SageMaker"
# ModelLatency is reported in microseconds.
_MICROSECONDS_PER_MS = 1000


class EndpointMonitoring(Construct):
    """Per-variant alarms, the composite alarm and dashboard rows of one endpoint."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        thresholds: MonitoringThresholds,
        serving_variant: str = DEFAULT_SERVING_VARIANT,
    ) -> None:
        super().__init__(scope, construct_id)
        self.endpoint_name = endpoint_name
        self.thresholds = thresholds
        # Role word in alarm names -> the production variant's actual name (the dimension).
        self.variant_names = {BASELINE: serving_variant, CANDIDATE: CANDIDATE}
        self._period = Duration.seconds(thresholds.period_seconds)
        self.alarms: dict[tuple[str, str], cw.Alarm] = {}
        for variant in (BASELINE, CANDIDATE):
            self._variant_alarms(variant)
        self._candidate_comparison_alarms()
        # After promotion the serving variant runs the promoted model; the sampler judges it then.
        self._quality_alarm(BASELINE)
        candidate_alarms = [
            alarm
            for (variant, signal), alarm in self.alarms.items()
            if variant == CANDIDATE and signal in ROLLBACK_SIGNALS
        ]
        self.composite = cw.CompositeAlarm(
            self,
            "Canary",
            composite_alarm_name=composite_alarm_name(endpoint_name),
            alarm_description=f"Any candidate rollback alarm of {endpoint_name}: the canary regressed (rolls back)",
            alarm_rule=cw.AlarmRule.any_of(*candidate_alarms),
        )
        # What reaches the rollback function: the rollback signals of both roles and the
        # composite (names, not tokens, so the EventBridge pattern reads as plain text). The
        # function acts on candidate alarms during a canary, on both after promotion.
        self.rollback_alarm_names = [
            alarm_name(endpoint_name, variant, signal)
            for variant in (CANDIDATE, BASELINE)
            for (v, signal) in self.alarms
            if v == variant and signal in ROLLBACK_SIGNALS
        ] + [composite_alarm_name(endpoint_name)]
        # Alarms that only notify people (an SNS action, added by the monitoring stack).
        self.notify_only_alarms = [alarm for (_, signal), alarm in self.alarms.items() if signal in NOTIFY_ONLY_SIGNALS]

    # --- metrics -------------------------------------------------------------------------------------

    def variant_metric(
        self, metric_name: str, variant: str, statistic: str, period: Duration | None = None
    ) -> cw.Metric:
        return cw.Metric(
            namespace=SAGEMAKER_NAMESPACE,
            metric_name=metric_name,
            dimensions_map={"EndpointName": self.endpoint_name, "VariantName": self.variant_names[variant]},
            statistic=statistic,
            period=period or self._period,
        )

    def quality_metric(self, variant: str = CANDIDATE, spec: MetricSpec = PERPLEXITY_INCREASE) -> cw.Metric:
        """A live-quality metric exactly as the sampler publishes it (contracts/live_quality.py)."""
        return cw.Metric(
            namespace=NAMESPACE,
            metric_name=spec.name,
            dimensions_map=dict(zip(DIMENSIONS, (self.endpoint_name, self.variant_names[variant]), strict=True)),
            statistic="Average",
            # An alarm with a unit matches only datapoints of that unit: the publisher's, by name.
            unit=cw.Unit[spec.unit.upper()],
            period=Duration.seconds(self.thresholds.quality_period_seconds),
        )

    def error_rate(self, variant: str, code: str) -> cw.MathExpression:
        """Percent of a variant's invocations that failed; 0 in minutes with too few requests."""
        if code not in ("5XX", "4XX"):
            raise ValueError(f"SageMaker publishes Invocation5XXErrors and Invocation4XXErrors, not {code}")
        # Ids unique per variant and code: one graph shows all four rates.
        err, inv = f"e{code[0]}{variant[0]}", f"i{variant[0]}"
        return cw.MathExpression(
            expression=f"IF({inv} >= {self.thresholds.min_invocations}, 100 * FILL({err}, 0) / {inv}, 0)",
            using_metrics={
                err: self.variant_metric(f"Invocation{code}Errors", variant, "Sum"),
                inv: self.variant_metric("Invocations", variant, "Sum"),
            },
            label=f"{variant} {code} %",
            period=self._period,
        )

    def latency_ratio(self) -> cw.MathExpression:
        """Candidate p95 over baseline p95, minute by minute, when both served enough requests."""
        n = self.thresholds.min_invocations
        return cw.MathExpression(
            expression=f"IF(ic >= {n} AND ib >= {n} AND pb > 0, pc / pb, 0)",
            using_metrics={
                "pc": self.variant_metric("ModelLatency", CANDIDATE, "p95"),
                "pb": self.variant_metric("ModelLatency", BASELINE, "p95"),
                "ic": self.variant_metric("Invocations", CANDIDATE, "Sum"),
                "ib": self.variant_metric("Invocations", BASELINE, "Sum"),
            },
            label="candidate p95 / baseline p95",
            period=self._period,
        )

    # --- alarms --------------------------------------------------------------------------------------

    def _alarm(
        self,
        variant: str,
        signal: str,
        metric: cw.IMetric,
        *,
        threshold: float,
        description: str,
        comparison: cw.ComparisonOperator = cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluation_periods: int | None = None,
        datapoints_to_alarm: int | None = None,
    ) -> cw.Alarm:
        alarm = cw.Alarm(
            self,
            f"{variant.title()}{signal.title().replace('-', '')}",
            alarm_name=alarm_name(self.endpoint_name, variant, signal),
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods or self.thresholds.evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm or self.thresholds.datapoints_to_alarm,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.alarms[(variant, signal)] = alarm
        return alarm

    def _variant_alarms(self, variant: str) -> None:
        t = self.thresholds
        window = f"{t.datapoints_to_alarm} of {t.evaluation_periods} periods of {t.period_seconds} s"
        self._alarm(
            variant,
            "latency-p95",
            self.variant_metric("ModelLatency", variant, "p95"),
            threshold=t.latency_p95_ms * _MICROSECONDS_PER_MS,
            description=f"{variant} ModelLatency p95 above {t.latency_p95_ms:g} ms (microseconds) in {window}. "
            "NOTIFY ONLY, never rolls back: ModelLatency of a whole generation grows with its output length",
        )
        for code, limit in (("5XX", t.error_5xx_percent), ("4XX", t.error_4xx_percent)):
            self._alarm(
                variant,
                code.lower(),
                self.error_rate(variant, code),
                threshold=limit,
                description=f"{variant} Invocation{code}Errors above {limit:g} % of invocations in {window}",
            )

    def _candidate_comparison_alarms(self) -> None:
        t = self.thresholds
        self._alarm(
            CANDIDATE,
            "latency-p95-vs-baseline",
            self.latency_ratio(),
            threshold=t.latency_p95_ratio,
            description=f"candidate p95 above {t.latency_p95_ratio:g} x the baseline's in "
            f"{t.datapoints_to_alarm} of {t.evaluation_periods} minutes",
        )
        self._quality_alarm(CANDIDATE)

    def _quality_alarm(self, variant: str) -> None:
        """The sampler's perplexity ratio of ``variant`` (the candidate during a canary, the serving
        variant after promotion) against the baseline's reference outputs."""
        t = self.thresholds
        self._alarm(
            variant,
            "quality",
            self.quality_metric(variant),
            threshold=t.quality_max_perplexity_increase_percent,
            evaluation_periods=t.quality_evaluation_periods,
            datapoints_to_alarm=t.quality_datapoints_to_alarm,
            description=f"{variant} {NAMESPACE} {PERPLEXITY_INCREASE.name} (published by the quality sampler) above "
            f"{t.quality_max_perplexity_increase_percent:g} % in {t.quality_datapoints_to_alarm} of "
            f"{t.quality_evaluation_periods} periods of {t.quality_period_seconds} s",
        )

    # --- deployment guardrails -------------------------------------------------------------------------

    def guardrail_deployment_config(self, variant: str = CANDIDATE, **options: Any) -> dict[str, Any]:
        """DeploymentConfig for replacing the model inside ``variant`` (no side-by-side canary).

        Rolls back on that variant's own rollback alarms; the comparison with
        the baseline does not apply when there is only one variant, and the
        absolute latency alarm only notifies.
        """
        names = [
            alarm_name(self.endpoint_name, v, signal)
            for (v, signal) in self.alarms
            if v == variant and signal in ROLLBACK_SIGNALS and signal != "latency-p95-vs-baseline"
        ]
        return guardrail_deployment_config(names, **options)

    # --- dashboard -----------------------------------------------------------------------------------

    def dashboard_widgets(self) -> list[list[cw.IWidget]]:
        """Rows for the dashboard: both variants side by side in every graph."""
        width, height = 8, 6
        variants = (BASELINE, CANDIDATE)
        latency = [
            cw.MathExpression(
                expression=f"{variant[0]}{stat} / 1000",
                using_metrics={f"{variant[0]}{stat}": self.variant_metric("ModelLatency", variant, stat)},
                label=f"{variant} {stat} (ms)",
                period=self._period,
            )
            for variant in variants
            for stat in ("p50", "p95")
        ]
        invocations = [
            self.variant_metric("Invocations", variant, "Sum").with_(label=f"{variant} invocations")
            for variant in variants
        ]
        share = [
            cw.MathExpression(
                expression=f"100 * FILL({own}, 0) / (FILL(ib, 0) + FILL(ic, 0))",
                using_metrics={
                    "ib": self.variant_metric("Invocations", BASELINE, "Sum"),
                    "ic": self.variant_metric("Invocations", CANDIDATE, "Sum"),
                },
                label=f"{variant} share of invocations (%)",
                period=self._period,
            )
            for variant, own in ((BASELINE, "ib"), (CANDIDATE, "ic"))
        ]
        errors = [self.error_rate(variant, code) for variant in variants for code in ("5XX", "4XX")]
        title = self.endpoint_name
        return [
            [cw.TextWidget(markdown=f"## {title}: baseline vs candidate", width=24, height=1)],
            [
                cw.GraphWidget(title=f"{title} ModelLatency p50/p95 (ms)", left=latency, width=width, height=height),
                cw.GraphWidget(title=f"{title} invocations", left=invocations, width=width, height=height),
                cw.GraphWidget(
                    title=f"{title} traffic share (observed weights, %)",
                    left=share,
                    left_y_axis=cw.YAxisProps(min=0, max=100),
                    width=width,
                    height=height,
                ),
            ],
            [
                cw.GraphWidget(title=f"{title} error rates (%)", left=errors, width=width, height=height),
                cw.GraphWidget(
                    title=f"{title} candidate p95 / baseline p95",
                    left=[self.latency_ratio()],
                    left_annotations=[cw.HorizontalAnnotation(value=self.thresholds.latency_p95_ratio, label="alarm")],
                    width=width,
                    height=height,
                ),
                cw.GraphWidget(
                    title=f"{title} {PERPLEXITY_INCREASE.name}",
                    left=[self.quality_metric(v).with_(label=f"{v} {PERPLEXITY_INCREASE.name}") for v in variants],
                    left_annotations=[
                        cw.HorizontalAnnotation(
                            value=self.thresholds.quality_max_perplexity_increase_percent, label="alarm"
                        )
                    ],
                    width=width,
                    height=height,
                ),
            ],
            # The sampler's other metrics: graphed beside the alarmed one, alarmed on by nothing.
            [
                cw.GraphWidget(
                    title=f"{title} {spec.name}",
                    left=[self.quality_metric(v, spec).with_(label=f"{v} {spec.name}") for v in variants],
                    width=width,
                    height=height,
                )
                for spec in METRICS
                if spec != PERPLEXITY_INCREASE
            ],
            [
                cw.AlarmStatusWidget(
                    title=f"{title} alarms",
                    alarms=[*self.alarms.values(), self.composite],
                    width=24,
                    height=3,
                )
            ],
        ]
