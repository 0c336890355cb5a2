"""The one-machine pilot (``make pilot``; ``python -m jobs.pilot``): not part of any job image.

- ``main``: the run, step by step, and the exit codes; ``plan``: arguments and input checks;
- ``children``: child processes (quantize jobs, model conversion) and signal handling;
- ``steps``: baseline model, data, quantize per scheme, perplexity; ``serve``: vLLM servers, the
  load test and each candidate's evaluate report; ``serving``: the vLLM server processes;
- ``summary``: the recommendation, pilot.json and the printed tables.

It uses the evaluate job through ``jobs.evaluate``'s public names and the quantize job as a
child process in its own environment, as the pipeline does on SageMaker.
"""
