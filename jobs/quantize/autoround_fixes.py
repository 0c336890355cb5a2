"""AutoRound in llm-compressor 0.14.0.1, with three of its faults worked around.

1. Asymmetric weights: carry AutoRound's zero point into compressed-tensors.

llm-compressor 0.14.0.1's AutoRoundModifier maps AutoRound's tuned ``scale`` onto the module's
``weight_scale`` but not its zero point ``zp``: an asymmetric scheme keeps the placeholder zero
point (all zeros), so every group is shifted and the model is ruined (SmolLM2-135M W4A16_ASYM:
validation perplexity +358 % where round-to-nearest gives +40 %; symmetric schemes are not
affected; docs/quantize.md "Automatic recipe").

The two libraries place the integer grid differently: AutoRound stores ``q`` in ``[0, 2^b - 1]``
with ``w = (q - zp) * scale``; compressed-tensors stores ``q`` in ``[-2^(b-1), 2^(b-1) - 1]``
with ``w = (q - z) * scale``. The same dequantized weights follow from ``z = zp - 2^(b-1)``.

2. Precision: AutoRound's mixed precision casts the layer it tunes to bfloat16 when the layer is
   float32 (the CPU path and float32 calibration on a GPU) and leaves it so; llm-compressor's next
   pass then feeds it float32 activations and fails ("expected m1 and m2 to have the same
   dtype"). A float32 layer is tuned with mixed precision off, in float32 throughout.

3. Samples of different lengths: the modifier right-pads each layer's captured inputs to the
   longest sample with zeros and sets a padding mask on AutoRound, which auto-round 0.15.1 never
   reads (its loss mask comes only from token ids, which it is not given): padded positions
   enter the tuning loss. There the two sides differ: the reference output comes from the
   zero-padded inputs, the tuned block's input is AutoRound's own output of the previous block,
   which is not zero at padded positions. Each layer is tuned to map that onto the reference, at
   the real tokens' expense (SmolLM2-135M W4A16_ASYM, 200 steps: held-out perplexity 1045
   against 13 for AWQ then GPTQ). The calibration samples are re-cut into samples of one length
   (``equal_length_samples``): nothing is padded.
"""

from __future__ import annotations

from typing import Any

from llmcompressor.modifiers.autoround import AutoRoundModifier

from jobs.quantize.compress import token_dataset

ZERO_POINT = "weight_zero_point"


def compressed_tensors_zero_point(autoround_zp: Any, num_bits: int, like: Any) -> Any:
    """AutoRound's unsigned zero point as compressed-tensors' signed one, shaped like ``like``."""
    shifted = autoround_zp.float().round() - 2 ** (num_bits - 1)
    return shifted.to(like.dtype).to(like.device).reshape(like.shape)


def equal_length_samples(dataset: Any, max_length: int, min_samples: int) -> Any:
    """``dataset``'s tokens re-cut, in order, into samples of one length: ``max_length`` or less,
    so that there are at least ``min_samples`` of them (AutoRound's batch). The tokens after the
    last whole sample are dropped (fewer than one sample's length). A dataset whose samples
    already share one length is returned as it is."""
    lengths = {len(ids) for ids in dataset["input_ids"]}
    if len(lengths) <= 1:
        return dataset
    tokens = [token for ids in dataset["input_ids"] for token in ids]
    length = max(1, min(max_length, len(tokens) // max(1, min_samples)))
    samples = [tokens[start : start + length] for start in range(0, len(tokens) - length + 1, length)]
    return token_dataset(samples)


class FixedAutoRoundModifier(AutoRoundModifier):
    """AutoRoundModifier that hands AutoRound's zero points over (asymmetric schemes), leaves
    each tuned layer in the precision it came in, and is calibrated on samples of one length."""

    def calibration_dataset(self, dataset: Any, max_length: int) -> Any:
        """The dataset this modifier calibrates on (fault 3: samples of one length)."""
        return equal_length_samples(dataset, max_length, self.batch_size)

    def apply_autoround(self, state: Any, modules: Any) -> None:
        import torch  # noqa: PLC0415
        from llmcompressor.modifiers.autoround import base  # noqa: PLC0415

        layers = [module for module in modules or [] if self._is_decoding_layer(module)]
        dtypes = {p.dtype for layer in layers for p in layer.parameters() if p.is_floating_point()}
        if dtypes != {torch.float32}:  # no layer here, or a 16-bit one: AutoRound's own choice
            super().apply_autoround(state, modules)
            return
        original = base.AutoRound

        def float32_autoround(*args: Any, **kwargs: Any) -> Any:
            return original(*args, amp=False, **kwargs)

        base.AutoRound = float32_autoround  # the name apply_autoround constructs it by
        try:
            super().apply_autoround(state, modules)
        finally:
            base.AutoRound = original

    def _postprocess_qparams(self, model: Any, llmc_registered_qparams: dict[str, dict[str, Any]]) -> None:
        for name, module in model.named_modules():
            zp = getattr(module, "zp", None)
            registered = llmc_registered_qparams.get(name, {})
            scheme = getattr(module, "quantization_scheme", None)
            if zp is None or ZERO_POINT not in registered or scheme is None or scheme.weights is None:
                continue
            if not scheme.weights.symmetric:
                registered[ZERO_POINT] = compressed_tensors_zero_point(
                    zp, scheme.weights.num_bits, registered[ZERO_POINT]
                )
            # The parent registers the placeholder from ``registered``; AutoRound's own
            # attribute would otherwise stay on the module as a stray tensor.
            delattr(module, "zp")
        super()._postprocess_qparams(model, llmc_registered_qparams)
