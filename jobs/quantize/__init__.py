"""The quantize job (a SageMaker training job; ``python -m jobs.quantize``), and its helpers.

- ``job``: the entry point (hyperparameters, run, manifest, failure file); ``__main__`` runs it;
- ``support``: the one support table and hyperparameter validation (pure Python: the
  input-validation Lambda's copy is kept equal to it by a test);
- ``preflight``, ``gpu_probe``: what is checked before a model is loaded;
- ``compress``: the llm-compressor recipe, calibration and save; ``artifact``: staging, publish;
- ``search``, ``recipes``, ``sensitivity``: the automatic recipe (``--recipe auto``): candidates,
  held-out scoring, mixed precision and the artifact's layer bytes; ``fitness``: the calibration
  fitness report;
- ``smollm2``, ``tiny_model``, ``check``: the offline test models and held-out text (tests,
  pilot, benchmark).

Nothing is imported here, so ``python -m jobs.quantize.smollm2`` loads only what it needs.
"""
