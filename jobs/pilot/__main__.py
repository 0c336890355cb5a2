"""``python -m jobs.pilot`` (``make pilot``): the one-machine pilot (docs/pilot.md)."""

from jobs.pilot.main import main

raise SystemExit(main())
