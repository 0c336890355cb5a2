"""The CPU-only workarounds of the quantize job stay scoped to the run that needs them."""

from __future__ import annotations

import pytest
import torch
from llmcompressor.pipelines.cache import IntermediatesCache

from jobs.quantize.compress import cast_dense_parameters, cpu_safe_intermediates_cache


@pytest.mark.skipif(torch.accelerator.is_available(), reason="the patch is only applied without an accelerator")
def test_awq_pinning_is_skipped_only_inside_the_run_and_restored_after():
    original = IntermediatesCache.pin_memory
    tensor = torch.ones(2)
    with pytest.raises(RuntimeError, match="accelerator"):
        tensor.pin_memory()  # why the workaround exists: CPU-only torch cannot pin
    with cpu_safe_intermediates_cache():
        assert IntermediatesCache.pin_memory is not original
    assert IntermediatesCache.pin_memory is original
    with pytest.raises(ValueError), cpu_safe_intermediates_cache():
        raise ValueError("a failing run")
    assert IntermediatesCache.pin_memory is original


def test_cast_back_to_source_dtype_leaves_quantized_tensors_alone():
    module = torch.nn.Module()
    module.dense = torch.nn.Parameter(torch.ones(3, dtype=torch.float32), requires_grad=False)
    module.fp8 = torch.nn.Parameter(torch.ones(3).to(torch.float8_e4m3fn), requires_grad=False)
    module.packed = torch.nn.Parameter(torch.ones(3, dtype=torch.int32), requires_grad=False)
    cast_dense_parameters(module, torch.bfloat16)
    assert module.dense.dtype == torch.bfloat16
    assert module.fp8.dtype == torch.float8_e4m3fn
    assert module.packed.dtype == torch.int32
