"""Operator commands beside the pipeline CLI: re-calibrate on captured traffic, approve after the human review.

    python -m stacks.operator_commands calibration-from-capture s3://<bucket>/models/<model>/<run>/capture/ \\
        --out calibration.jsonl
    python -m stacks.operator_commands approve-after-review --model-package-arn <arn> verdicts-*.json \\
        [--review s3://<bucket>/models/<model>/<run>/reports/review.json]

``calibration-from-capture`` reads SageMaker data-capture files (an S3 prefix or a local folder, every
``*.jsonl`` under it), takes each request's prompt (contracts/data_capture.py: LMI ``inputs``, OpenAI
``prompt`` and ``messages``), drops exact duplicates and writes a calibration JSONL in the shapes the
quantize job reads (contracts/prompt_records.py): ``{"text"}``, or ``{"messages"}`` for chat requests.
Captured prompts are user data: they may hold personal data. Review (or scrub) the file before it is
used, stored beside a model or shared; docs/monitoring.md says more.

``approve-after-review`` is the other half of ``pipeline.require_human_review``: it reads the verdict
files downloaded from review.html, decides with the review rule (contracts/review_rule.py, the same as
jobs/evaluate/review_summary.py) and approves the model package only when it says go and the package
is still PendingManualApproval. Exit codes: 0 approved, 1 no-go (left pending), 2 bad input, 3 AWS error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from contracts.data_capture import CapturedPrompts, deduplicated
from contracts.review_rule import CHOICES, MAX_NET_BASELINE_PCT, decide, preferred_of, tally

PENDING = "PendingManualApproval"
SIDES = ("A", "B")


class InputError(ValueError):
    """A bad argument or file; the message names it."""


# ----- calibration-from-capture


def _s3_texts(uri: str, region: str | None) -> Iterator[tuple[str, str]]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3", region_name=region)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith(".jsonl"):
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                yield f"s3://{bucket}/{item['Key']}", body.decode("utf-8", errors="replace")


def _local_texts(path: Path) -> Iterator[tuple[str, str]]:
    if not path.exists():
        raise InputError(f"{path} does not exist")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.jsonl") if p.is_file())
    for file in files:
        yield str(file), file.read_text(encoding="utf-8", errors="replace")


def calibration_from_capture(source: str, out: Path, region: str | None = None) -> dict[str, int]:
    """Write the deduplicated prompts of every capture file under ``source`` to ``out``; returns the counts."""
    captured = CapturedPrompts()
    files = 0
    texts = _s3_texts(source, region) if source.startswith("s3://") else _local_texts(Path(source))
    for _, text in texts:
        files += 1
        captured.add_lines(text.splitlines())
    records = deduplicated(captured.records)
    if not records:
        raise InputError(f"no prompts found in {files} capture file(s) under {source}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return {
        "files": files,
        "lines": captured.lines,
        "unreadable": captured.unreadable,
        "prompts": len(captured.records),
        "duplicates": len(captured.records) - len(records),
        "written": len(records),
    }


# ----- approve-after-review


def read_verdicts(paths: Sequence[Path]) -> tuple[str, list[dict[str, str]]]:
    """(sample id, verdicts with ``preferred`` recomputed) of the verdict files review.html downloads."""
    samples: set[str] = set()
    verdicts: list[dict[str, str]] = []
    for path in paths:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not a readable verdict file ({exc})") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("verdicts"), list):
            raise InputError(f"{path}: a verdict file is an object with a verdicts list")
        samples.add(str(raw.get("sample_id")))
        for number, verdict in enumerate(raw["verdicts"], start=1):
            choice, side = verdict.get("choice"), verdict.get("candidate_was")
            if choice not in CHOICES or side not in SIDES:
                raise InputError(f"{path}: verdict {number}: choice {choice!r} / candidate_was {side!r} is not valid")
            verdicts.append({"id": str(verdict.get("id")), "preferred": preferred_of(choice, side)})
    if len(samples) != 1:
        raise InputError(f"the verdict files judge different samples: {', '.join(sorted(samples))}")
    if not verdicts:
        raise InputError("no verdicts in the given files")
    return samples.pop(), verdicts


def review_sample_id(source: str, region: str | None) -> str:
    """The sample id of the run's review.json (an s3:// URI or a local path)."""
    if source.startswith("s3://"):
        bucket, _, key = source.removeprefix("s3://").partition("/")
        text = boto3.client("s3", region_name=region).get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    else:
        text = Path(source).read_text(encoding="utf-8")
    sample = json.loads(text).get("sample_id")
    if not isinstance(sample, str):
        raise InputError(f"{source}: no sample_id")
    return sample


def approve_after_review(
    arn: str, paths: Sequence[Path], max_net_pct: float, region: str | None, review: str | None = None
) -> int:
    sample, verdicts = read_verdicts(paths)
    if review is not None and (expected := review_sample_id(review, region)) != sample:
        raise InputError(f"the verdicts judge sample {sample}, the run's review {review} is sample {expected}")
    verdict = decide(tally(verdicts), max_net_pct)
    print(
        f"review sample {sample}: {len(verdicts)} verdicts, baseline preferred {verdict['net_baseline_preferred']:+d} "
        f"net ({verdict['net_baseline_preferred_pct']:+.1f} %); rule: {verdict['rule']}"
    )
    sagemaker = boto3.client("sagemaker", region_name=region)
    status = sagemaker.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"]
    if status != PENDING:
        print(f"{arn} is {status}, not {PENDING}: nothing to approve", file=sys.stderr)
        return 2
    if verdict["decision"] != "go":
        print(f"NO-GO: {arn} stays {PENDING}")
        return 1
    sagemaker.update_model_package(
        ModelPackageArn=arn,
        ModelApprovalStatus="Approved",
        ApprovalDescription=(
            f"human review: go (sample {sample}, {len(verdicts)} verdicts, net baseline preferred "
            f"{verdict['net_baseline_preferred_pct']:+.1f} % <= {max_net_pct:g} %)"
        )[:1024],
    )
    print(f"GO: {arn} approved")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stacks.operator_commands", description=__doc__.splitlines()[0])
    parser.add_argument("--region", default=None)
    commands = parser.add_subparsers(dest="command", required=True)
    capture = commands.add_parser("calibration-from-capture", help="calibration JSONL from captured traffic")
    capture.add_argument("source", help="s3://bucket/prefix/ or a local folder/file of capture *.jsonl")
    capture.add_argument("--out", type=Path, required=True, help="calibration JSONL to write")
    review = commands.add_parser("approve-after-review", help="approve a pending package if the review says go")
    review.add_argument("--model-package-arn", required=True)
    review.add_argument("verdicts", nargs="+", type=Path, help="verdict files downloaded from review.html")
    review.add_argument("--max-net-baseline-pct", type=float, default=MAX_NET_BASELINE_PCT)
    review.add_argument(
        "--review",
        help="the run's review.json (s3://<bucket>/models/<model>/<run>/reports/review.json or a path): "
        "refuses verdicts of another sample",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "calibration-from-capture":
            counts = calibration_from_capture(args.source, args.out, args.region)
            print(", ".join(f"{name} {value}" for name, value in counts.items()) + f" -> {args.out}")
            print("captured prompts are user data and may hold personal data: review the file before using it")
            return 0
        return approve_after_review(
            args.model_package_arn, args.verdicts, args.max_net_baseline_pct, args.region, args.review
        )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:
        print(f"AWS error: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
