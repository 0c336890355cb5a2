"""Build and quantize the tiny MoE and vision-language artifacts the serving tests load.

Runs in .venv-quantize (``python -m tests.jobs.evaluate.family_artifacts OUT``), all in one
process: each interpreter start imports torch, transformers and llm-compressor, which on the
shared CPU costs more than the tiny quantizations themselves.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jobs.quantize import job
from jobs.quantize.tiny_families import build_tiny_moe, build_tiny_qwen2_vl

# artifact name -> (source, extra job arguments); every one rtn W8A8 (data-free).
ARTIFACTS = {
    "moe": ("moe", []),
    # The CPU workaround (docs/quantize.md "Model families"): experts stay in bf16.
    "moe-bf16-experts": ("moe", ["--ignore", r"re:.*\.mlp\.experts\..*"]),
    "vlm": ("vlm", []),
}


def main(root: Path) -> int:
    sources = {"moe": build_tiny_moe(root / "moe-source"), "vlm": build_tiny_qwen2_vl(root / "vlm-source")}
    for name, (source, extra) in ARTIFACTS.items():
        env = {
            "SM_CHANNEL_MODEL": str(sources[source]),
            "SM_CHANNEL_CALIBRATION": str(root / "none"),
            "SM_MODEL_DIR": str(root / name),
            "SM_OUTPUT_DIR": str(root / f"{name}-failure"),
            "SM_INPUT_CONFIG_DIR": str(root / "none"),
        }
        if job.main(["--algorithm", "rtn", "--scheme", "W8A8", *extra], env=env) != 0:
            print(f"quantizing {name} failed", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
