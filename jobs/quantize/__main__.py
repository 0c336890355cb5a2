"""``python -m jobs.quantize``: the quantize job's entry point (containers/quantize/Dockerfile)."""

import sys

from jobs.quantize.job import main

sys.exit(main())
