"""How much host RAM, GPU memory and disk a quantize job needs, and the cheapest
SageMaker training instance that has them.

Pure Python (no torch): the validate Lambda refuses a quantize instance that
cannot hold the model before any job starts, and docs/quantize-sizing.md
prints the same table. The coefficients are fitted on real runs of
the quantize job, jobs/quantize/ (benchmarks/results/gpu-scale-h200.json: Llama-3.1-8B shape,
W4A16 g128, 128 x 2048 calibration tokens, one H200):

- GPTQ: peak host RSS 22.98 GiB, peak GPU 7.42 GiB, 223.5 s;
- AWQ:  peak host RSS 23.56 GiB, peak GPU 51.96 GiB, 435.7 s.

What the fit assumes (not measured beyond 8B): llm-compressor's sequential
pipeline keeps the whole model in host RAM in its source dtype and one
decoder layer on the GPU, so host RAM scales with parameters, GPU memory with
one layer plus the calibration activations (tokens x hidden for GPTQ's
Hessian inputs, tokens x intermediate for AWQ's cached activations), and time
with parameters x calibration tokens / the GPU's bf16 throughput.

Several GPUs (NOT MEASURED: no multi-GPU run exists; docs/quantize-sizing.md
"Several GPUs"): on an instance with N GPUs the job runs one rank per GPU
(jobs/quantize/launch.py) and the rule is evaluated for N ranks. The factors
below that depend on N are derived from how llm-compressor 0.14's distributed
oneshot works, not fitted; with N = 1 every number is the fitted rule above.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from contracts.support_table import FLOAT32_CALIBRATION_MAX_PARAMETERS

GIB = 1024**3
REFERENCE_TOKENS = 128 * 2048

# (parameters in billions, hidden, intermediate, layers) of the Llama-3 family:
# other sizes are interpolated in log(parameters) between these shapes.
REFERENCE_SHAPES = ((8.0, 4096, 14336, 32), (70.6, 8192, 28672, 80), (405.9, 16384, 53248, 126))

# Host RAM: bytes of the bf16 model times this, plus room for the OS, the
# tokenizer, the dataloader and SageMaker's agent. Measured ratio 1.54 (GPTQ) and
# 1.58 (AWQ) of the 14.96 GiB source; 1.6 keeps a margin.
HOST_RAM_PER_MODEL_BYTE = 1.6
HOST_RAM_FIXED_GIB = 4.0
# GPU memory: CUDA context and allocator slack, then per algorithm how many bytes
# per calibration token x width the cached activations take (fitted on the runs above).
GPU_FIXED_GIB = 1.0
GPTQ_ACTIVATION_FACTOR = 2.2  # x tokens x hidden x 2 bytes
AWQ_ACTIVATION_FACTOR = 7.2  # x tokens x intermediate x 2 bytes
# Disk: the source, the artifact staged beside it (4-bit: 0.36 of the source,
# 8-bit: 0.53), and 10 GiB for the container and logs.
DISK_FIXED_GIB = 10.0
# Seconds per billion parameters per reference calibration (128 x 2048 tokens) on an H200.
SECONDS_PER_BILLION_H200 = {"gptq": 223.5 / 8.0, "smoothquant-gptq": 223.5 / 8.0, "awq": 435.7 / 8.0, "rtn": 1.0}
H200_BF16_TFLOPS = 989.0
# Share of the measured wall time spent in oneshot's calibration (the manifests of the same runs:
# GPTQ 201.1 of 221.5 s, AWQ 415.9 of 433.6 s); the rest (preflight, load, save) is serial.
CALIBRATE_SHARE = {"gptq": 201.1 / 221.5, "smoothquant-gptq": 201.1 / 221.5, "awq": 415.9 / 433.6, "rtn": 0.0}

# --- N ranks: assumptions, NOT MEASURED (docs/quantize-sizing.md "Several GPUs") ---
# GPU, per GPU: every rank onloads the whole current layer, so the layer term stays; GPTQ's
# Hessians are accumulated on every rank, so they stay; AWQ caches only the rank's own samples
# (tokens / N). GPTQ's activation term is kept whole: its one-point fit does not say whether it
# grows with tokens. NCCL's buffers add this much to each GPU.
NCCL_GIB_PER_GPU = 1.0
# Host: the model once (rank 0 reads it into shared memory, the others map it); the cached
# activations are split between the ranks (same total); each extra rank adds its own process.
HOST_GIB_PER_EXTRA_RANK = 4.0
# Time: calibration splits across ranks except for a serial share (the per-layer synchronisation,
# GPTQ's largest module, which one rank solves alone). 0.15: llm-compressor's published GPTQ
# times (Llama-3-8B, 745 s on 1 GPU, 372 s on 2, 264 s on 4) give 0.14.
SERIAL_SHARE = 0.15
# Before calibrating, rank 0 reads the whole model into shared memory (load_offloaded_model); one
# process does it alone, at this rate (the one-GPU path reads lazily, layer by layer).
SHARE_GIB_PER_SECOND = 0.5


@dataclass(frozen=True)
class TrainingInstance:
    name: str
    gpus: int
    gpu: str
    gpu_memory_gib: float  # per GPU (the job runs one rank per GPU)
    host_memory_gib: float
    gpu_bf16_tflops: float  # dense, vendor datasheet
    usd_per_hour: float


# SageMaker training instances with NVIDIA GPUs, cheapest first within a family.
# Prices: approximate on-demand list prices for SageMaker training in us-east-1,
# transcribed by hand (no network here to re-read the pricing page); check
# https://aws.amazon.com/sagemaker/ai/pricing/ before a purchase decision.
PRICES_AS_OF = "2025-10 (approximate; verify on the SageMaker pricing page)"
TRAINING_INSTANCES: tuple[TrainingInstance, ...] = (
    TrainingInstance("ml.g5.xlarge", 1, "A10G", 24, 16, 125, 1.41),
    TrainingInstance("ml.g5.2xlarge", 1, "A10G", 24, 32, 125, 1.52),
    TrainingInstance("ml.g5.4xlarge", 1, "A10G", 24, 64, 125, 2.03),
    TrainingInstance("ml.g5.8xlarge", 1, "A10G", 24, 128, 125, 3.06),
    TrainingInstance("ml.g5.16xlarge", 1, "A10G", 24, 256, 125, 5.12),
    TrainingInstance("ml.g5.24xlarge", 4, "A10G", 24, 384, 125, 10.18),
    TrainingInstance("ml.g5.48xlarge", 8, "A10G", 24, 768, 125, 20.36),
    TrainingInstance("ml.g6e.xlarge", 1, "L40S", 48, 32, 362, 2.34),
    TrainingInstance("ml.g6e.2xlarge", 1, "L40S", 48, 64, 362, 2.81),
    TrainingInstance("ml.g6e.4xlarge", 1, "L40S", 48, 128, 362, 3.76),
    TrainingInstance("ml.g6e.8xlarge", 1, "L40S", 48, 256, 362, 5.67),
    TrainingInstance("ml.g6e.16xlarge", 1, "L40S", 48, 512, 362, 9.52),
    TrainingInstance("ml.g6e.48xlarge", 8, "L40S", 48, 1536, 362, 37.65),
    TrainingInstance("ml.p4d.24xlarge", 8, "A100 40GB", 40, 1152, 312, 37.69),
    TrainingInstance("ml.p4de.24xlarge", 8, "A100 80GB", 80, 1152, 312, 47.11),
    TrainingInstance("ml.p5.48xlarge", 8, "H100 80GB", 80, 2048, 989, 113.07),
    TrainingInstance("ml.p5e.48xlarge", 8, "H200 141GB", 141, 2048, 989, 124.0),
)
INSTANCES_BY_NAME = {i.name: i for i in TRAINING_INSTANCES}


@dataclass(frozen=True)
class Needs:
    """One quantize job's resources on ``ranks`` GPUs (one rank per GPU): host RAM in all,
    GPU memory on each GPU, disk, and seconds on that many H200s."""

    parameters_billion: float
    algorithm: str
    calibration_tokens: int
    host_memory_gib: float
    gpu_memory_gib: float  # per GPU
    disk_gib: int
    h200_seconds: float
    samples: int = 128
    max_seq_length: int = 2048
    weight_bits: int = 4
    ranks: int = 1
    # The automatic recipe runs in one process whatever the GPUs (jobs/quantize/launch.py).
    single_process: bool = False

    def on(self, instance: TrainingInstance) -> Needs:
        """This job as it runs on ``instance``: one rank per GPU (jobs/quantize/launch.py)."""
        ranks = ranks_on(instance, self.algorithm, self.samples)
        if ranks == self.ranks or self.single_process:
            return self
        return estimate(
            self.parameters_billion,
            self.algorithm,
            samples=self.samples,
            max_seq_length=self.max_seq_length,
            weight_bits=self.weight_bits,
            ranks=ranks,
        )

    def fits(self, instance: TrainingInstance) -> bool:
        needs = self.on(instance)
        return instance.host_memory_gib >= needs.host_memory_gib and instance.gpu_memory_gib >= needs.gpu_memory_gib

    def hours_on(self, instance: TrainingInstance) -> float:
        return self.on(instance).h200_seconds * (H200_BF16_TFLOPS / instance.gpu_bf16_tflops) / 3600

    def cost_on(self, instance: TrainingInstance) -> float:
        # SageMaker bills per second; a job also pays for the container start (~5 minutes).
        return (self.hours_on(instance) + 5 / 60) * instance.usd_per_hour


def ranks_on(instance: TrainingInstance, algorithm: str, samples: int) -> int:
    """How many ranks the job starts there: one per GPU, but one for data-free rtn and never
    more than there are calibration samples (the job's ``num_processes auto``)."""
    if algorithm == "rtn":
        return 1
    return max(1, min(instance.gpus, samples))


def llama_shape(parameters_billion: float) -> tuple[int, int, int]:
    """(hidden, intermediate, layers) of a Llama-like model of this size."""
    if parameters_billion <= 0:
        raise ValueError("parameters_billion must be positive")
    points = REFERENCE_SHAPES
    x = math.log(parameters_billion)
    if parameters_billion <= points[0][0]:
        low, high = points[0], points[1]
    elif parameters_billion >= points[-1][0]:
        low, high = points[-2], points[-1]
    else:
        low, high = next((a, b) for a, b in itertools.pairwise(points) if a[0] <= parameters_billion <= b[0])
    t = (x - math.log(low[0])) / (math.log(high[0]) - math.log(low[0]))

    def interpolate(a: float, b: float) -> int:
        # Widths grow geometrically with size; interpolate (and extrapolate) in log space.
        return max(1, round(math.exp(math.log(a) + t * (math.log(b) - math.log(a)))))

    return interpolate(low[1], high[1]), interpolate(low[2], high[2]), interpolate(low[3], high[3])


def estimate(
    parameters_billion: float,
    algorithm: str,
    *,
    samples: int = 128,
    max_seq_length: int = 2048,
    weight_bits: int = 4,
    ranks: int = 1,
    single_process: bool = False,
) -> Needs:
    """Resources of one quantize job on ``ranks`` GPUs; source weights in bf16 (calibrated in
    float32 up to ``FLOAT32_CALIBRATION_MAX_PARAMETERS``: twice the bytes in memory). ``ranks=1``
    is the fitted rule; more ranks apply the NOT MEASURED factors above."""
    hidden, intermediate, layers = llama_shape(parameters_billion)
    model_gib = parameters_billion * 1e9 * 2 / GIB
    # Small sources are calibrated in float32 (4 bytes a parameter) on a GPU too.
    calibration_scale = 2.0 if parameters_billion * 1e9 <= FLOAT32_CALIBRATION_MAX_PARAMETERS else 1.0
    layer_gib = calibration_scale * model_gib / layers
    tokens = samples * max_seq_length if algorithm != "rtn" else 0
    rank_tokens = math.ceil(samples / ranks) * max_seq_length if tokens else 0
    if algorithm == "awq":
        activations = calibration_scale * AWQ_ACTIVATION_FACTOR * rank_tokens * intermediate * 2 / GIB
    elif algorithm in ("gptq", "smoothquant-gptq"):
        hessians = (6 * hidden**2 + intermediate**2) * 4 / GIB
        activations = calibration_scale * GPTQ_ACTIVATION_FACTOR * tokens * hidden * 2 / GIB + hessians
    else:
        activations = 0.0
    gpu = GPU_FIXED_GIB + 2 * layer_gib + activations
    host = HOST_RAM_PER_MODEL_BYTE * calibration_scale * model_gib + HOST_RAM_FIXED_GIB
    artifact_ratio = 0.36 if weight_bits <= 4 else 0.53
    disk = model_gib * (1 + artifact_ratio) + DISK_FIXED_GIB
    seconds = SECONDS_PER_BILLION_H200[algorithm] * parameters_billion * (tokens / REFERENCE_TOKENS if tokens else 1)
    if ranks > 1:
        gpu += NCCL_GIB_PER_GPU
        host += HOST_GIB_PER_EXTRA_RANK * (ranks - 1)
        calibrate = CALIBRATE_SHARE[algorithm] * seconds
        seconds += calibrate * (SERIAL_SHARE + (1 - SERIAL_SHARE) / ranks) - calibrate
        seconds += model_gib / SHARE_GIB_PER_SECOND
    return Needs(
        parameters_billion=parameters_billion,
        algorithm=algorithm,
        calibration_tokens=tokens,
        host_memory_gib=round(host, 1),
        gpu_memory_gib=round(gpu, 1),
        disk_gib=math.ceil(disk),
        h200_seconds=round(seconds, 1),
        samples=samples,
        max_seq_length=max_seq_length,
        weight_bits=weight_bits,
        ranks=ranks,
        single_process=single_process,
    )


def cheapest_fitting(needs: Needs) -> TrainingInstance | None:
    """The instance with the lowest expected job cost that holds the model, or None."""
    fitting = [i for i in TRAINING_INSTANCES if needs.fits(i)]
    return min(fitting, key=needs.cost_on) if fitting else None


def instance_problem(instance_type: str, needs: Needs) -> str | None:
    """None if ``instance_type`` holds the job (run with one rank per GPU), else one sentence
    naming what fits."""
    instance = INSTANCES_BY_NAME.get(instance_type)
    if instance is None:
        return None  # not a GPU training type this table knows; the job itself will tell
    if needs.fits(instance):
        return None
    there = needs.on(instance)
    short = []
    if instance.host_memory_gib < there.host_memory_gib:
        short.append(f"{there.host_memory_gib:g} GiB host RAM (it has {instance.host_memory_gib:g})")
    if instance.gpu_memory_gib < there.gpu_memory_gib:
        where = "on one GPU" if there.ranks == 1 else f"on each of its {there.ranks} GPUs"
        short.append(f"{there.gpu_memory_gib:g} GiB {where} (it has {instance.gpu_memory_gib:g})")
    best = cheapest_fitting(needs)
    advice = (
        f"the cheapest instance that fits is {best.name}"
        if best
        else "no single instance fits: lower num_calibration_samples or max_seq_length"
    )
    return (
        f"{instance_type} cannot hold a {needs.parameters_billion:g}B-parameter {needs.algorithm} job "
        f"with {needs.calibration_tokens} calibration tokens: it needs {' and '.join(short)}; {advice}"
    )
