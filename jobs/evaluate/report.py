"""report.md and the side-by-side plot of an evaluation (any number of variants)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _fmt(value: Any, spec: str = ".3f", none: str = "n/a") -> str:
    if value is None:
        return none
    if isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def side_by_side_rows(report: dict[str, Any]) -> list[list[str]]:
    """Rows of the table printed by the pilot and written in report.md (one per variant x level)."""
    rows = []
    perf = report.get("performance") or {}
    cost = (report.get("cost") or {}).get("per_variant", {})
    for variant, data in (perf.get("variants") or {}).items():
        for conc, level in sorted(data.get("levels", {}).items(), key=lambda kv: int(kv[0])):
            usd = (cost.get(variant) or {}).get("usd_per_1m_output_tokens", {}).get(conc)
            rows.append(
                [
                    variant,
                    conc,
                    _fmt(level.get("output_tokens_per_s"), ".1f"),
                    _fmt(level.get("latency_p50_s")),
                    _fmt(level.get("latency_p95_s")),
                    _fmt(level.get("latency_p99_s")),
                    _fmt(level.get("ttft_p50_s")),
                    _fmt(level.get("error_rate"), ".1%"),
                    _fmt(usd, ".2f"),
                ]
            )
    return rows


PERF_HEADER = ["variant", "conc.", "out tok/s", "p50 s", "p95 s", "p99 s", "TTFT p50 s", "errors", "$/1M tok"]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def render_markdown(report: dict[str, Any]) -> str:
    fid = report.get("fidelity") or {}
    mem = report.get("memory") or {}
    gate = report.get("gate") or {}
    cost = report.get("cost") or {}
    perf = report.get("performance") or {}
    models = report.get("models", {})
    lines = [
        f"# Evaluation: {models.get('candidate', {}).get('scheme', 'candidate')} vs "
        f"{models.get('baseline', {}).get('scheme', 'baseline')}",
        "",
        f"**Gate: {'PASSED' if gate.get('passed') else 'FAILED'}** "
        f"(workload concurrency {gate.get('workload', {}).get('concurrency')})",
        "",
        *[f"- {r}" for r in gate.get("reasons", [])],
        "",
        "## Fidelity",
        "",
        markdown_table(
            ["", "baseline", "candidate"],
            [
                ["perplexity", _fmt(fid.get("baseline_perplexity")), _fmt(fid.get("candidate_perplexity"))],
                ["increase", "", _fmt(fid.get("ppl_increase_pct"), "+.2f") + " %"],
                ["tokens scored", str(fid.get("token_count")), str(fid.get("token_count"))],
                [
                    "greedy agreement (exact / prefix)",
                    "",
                    f"{_fmt((fid.get('greedy') or {}).get('exact_match_rate'), '.0%')} / "
                    f"{_fmt((fid.get('greedy') or {}).get('mean_prefix_agreement'), '.0%')}",
                ],
            ],
        ),
        "",
        "## Performance",
        "",
    ]
    if perf.get("measured"):
        lines += [
            f"Client: {perf.get('client')}; {perf.get('max_tokens')} output tokens per request "
            f"(fixed length: {perf.get('fixed_length')}); warm-up excluded.",
            "",
            markdown_table(PERF_HEADER, side_by_side_rows(report)),
            "",
        ]
    else:
        lines += [f"Not measured: {perf.get('reason')}", ""]
    lines += ["## Memory", ""]
    mem_rows = []
    for variant, data in (mem.get("variants") or {}).items():
        server = data.get("server") or {}
        rss = server.get("process_rss_bytes")
        mem_rows.append(
            [
                variant,
                f"{data.get('weight_bytes', 0) / 1e6:.1f} MB",
                "n/a" if rss is None else f"{rss / 1e9:.2f} GB",
                ", ".join(server.get("linear_kernels") or []) or "n/a",
            ]
        )
    lines += [markdown_table(["variant", "weights", "server RSS", "vLLM linear kernel"], mem_rows), ""]
    if mem.get("bytes_per_parameter"):
        per = ", ".join(f"{k} {v:.3f}" for k, v in mem["bytes_per_parameter"].items())
        lines += [f"Bytes per parameter ({mem.get('parameters'):,} parameters): {per}", ""]
    lines += ["## Cost", ""]
    if cost:
        table = cost.get("price_table", {})
        lines += [
            f"Measured throughput priced at {cost.get('measured_on', {}).get('instance_type')} "
            f"(${cost.get('measured_on', {}).get('usd_per_hour')}/h): {cost.get('measured_on', {}).get('note')}",
            f"Prices: {table.get('price_kind')}, {table.get('region')}, as of {table.get('as_of')} "
            f"({table.get('source')})",
            "",
        ]
        rows = []
        for variant, data in (cost.get("per_variant") or {}).items():
            fit = data.get("smallest_instance") or {}
            rows.append(
                [
                    variant,
                    _fmt((cost.get("usd_per_1m_output_tokens") or {}).get(variant), ".2f"),
                    str(fit.get("instance_type")),
                    _fmt(fit.get("usd_per_hour"), ".4f"),
                    _fmt(fit.get("required_gib"), ".2f"),
                ]
            )
        lines += [
            markdown_table(
                ["variant", "$/1M tokens at workload", "smallest SageMaker instance", "$/h", "needs GiB"], rows
            ),
            "",
        ]
    lines += ["![latency and throughput](performance.png)" if report.get("plot") else "", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> bool:
    """Latency distribution (box plots) and throughput (bars) per variant and concurrency."""
    perf = report.get("performance") or {}
    if not perf.get("measured"):
        return False
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    variants = list(perf["variants"])
    levels = sorted({int(c) for v in variants for c in perf["variants"][v]["levels"]})
    fig, (ax_lat, ax_tput) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(len(variants), 1)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, variant in enumerate(variants):
        data = perf["variants"][variant]["levels"]
        positions = [li + (i - (len(variants) - 1) / 2) * width for li in range(len(levels))]
        samples = [data.get(str(c), {}).get("latencies_s") or [0.0] for c in levels]
        box = ax_lat.boxplot(samples, positions=positions, widths=width * 0.9, patch_artist=True, showfliers=True)
        for patch in box["boxes"]:
            patch.set_facecolor(colors[i % len(colors)])
            patch.set_alpha(0.6)
        ax_tput.bar(
            positions,
            [data.get(str(c), {}).get("output_tokens_per_s") or 0.0 for c in levels],
            width=width * 0.9,
            color=colors[i % len(colors)],
            label=variant,
        )
    for ax in (ax_lat, ax_tput):
        ax.set_xticks(range(len(levels)))
        ax.set_xticklabels([str(c) for c in levels])
        ax.set_xlabel("concurrency")
    ax_lat.set_ylabel("end-to-end latency (s)")
    ax_lat.set_title("Latency per request")
    ax_tput.set_ylabel("output tokens/s")
    ax_tput.set_title("Throughput")
    ax_tput.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
