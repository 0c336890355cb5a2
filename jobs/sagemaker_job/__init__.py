"""Plumbing every SageMaker job here shares (copied into both job images).

- ``failure``: the failure file SageMaker reads (training: ``failure``; processing: ``message``);
- ``hyperparameters``: the one reader of ``hyperparameters.json`` and the job's arguments;
- ``records``: the one reader of the JSONL/text record shapes (calibration, validation);
- ``perplexity``: the one perplexity implementation (sliding window).
"""
