"""Choose the input-drift thresholds (contracts/prompt_drift.py) from measured false alarms and detections.

The drift check compares a calibration set (the reference, ``--reference-size`` prompts: the quantize
job's default calibration sample is 128-512) with the prompts captured over a lookback window (the
observed set, 50 to 1000 prompts). A threshold must (1) stay quiet when both are samples of one prompt
population, at every observed size from ``MIN_PROMPTS`` up, and (2) fire when the traffic is of other
lengths, another domain or another language. Prompt populations, all offline:

- ``docs``: paragraphs of the Python documentation (``pydoc_data.topics``, shipped with every Python;
  the pilot calibrates on it);
- ``legal``: paragraphs of the license files of the installed Python packages (English, another domain);
- ``ui_en`` / ``ui_de``: the English message ids and their German translations in the system's gettext
  catalogs (``/usr/share/locale/de/LC_MESSAGES/*.mo``): the same content in two languages (skipped,
  and said so in the results, where the catalogs are missing);
- ``docs_short``: docs paragraphs cut to their first 8-25 words (chat-length questions on the same
  topics); ``docs_long``: two docs paragraphs joined (longer prompts, same words);
- ``docs+legal p``: docs traffic with a share ``p`` of legal paragraphs mixed in.

Null: ``--trials`` draws of a reference and a disjoint observed sample of one population; the
false-alarm rate of a threshold is the share of draws whose statistic exceeds it. Shifted: reference
from ``docs`` (or ``ui_en`` for the language case), observed from the shifted population; the
detection rate is the share of draws the check calls drifted. Writes benchmarks/results/<name>.json.

    .venv/bin/python benchmarks/prompt_drift_thresholds.py [--trials 200] [--reference-size 256]
"""

from __future__ import annotations

import argparse
import gettext
import json
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contracts import prompt_drift  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "prompt-drift-thresholds.json"
SIZES = (50, 100, 200, 500, 1000)
KS_GRID = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4)
JSD_GRID = (0.05, 0.075, 0.1, 0.125, 0.15, 0.2)
CATALOGS = Path("/usr/share/locale/de/LC_MESSAGES")
Case = dict[str, Any]


def _paragraphs(text: str, lo: int = 8, hi: int = 400) -> list[str]:
    blocks = (" ".join(block.split()) for block in re.split(r"\n\s*\n", text))
    return [b for b in blocks if lo <= len(prompt_drift.words(b)) <= hi]


def docs() -> list[str]:
    from pydoc_data import topics  # only the benchmark reads it

    return [p for text in topics.topics.values() for p in _paragraphs(text)]


def legal() -> list[str]:
    seen: dict[str, None] = {}
    for path in sorted(Path(sys.prefix).glob("lib/python3*/site-packages/*.dist-info/**/LICEN[CS]E*")):
        if path.is_file():
            seen.update(dict.fromkeys(_paragraphs(path.read_text(encoding="utf-8", errors="replace"))))
    return list(seen)


def ui_catalogs() -> tuple[list[str], list[str]]:
    """English message ids and their German translations (empty where the catalogs are missing)."""
    english, german = [], []
    for path in sorted(CATALOGS.glob("*.mo")):
        try:
            with path.open("rb") as fh:
                catalog = gettext.GNUTranslations(fh)._catalog  # type: ignore[attr-defined]
        except (OSError, UnicodeDecodeError):
            continue
        for msgid, msgstr in catalog.items():
            usable = isinstance(msgid, str) and isinstance(msgstr, str) and msgstr and msgid != msgstr
            if usable and len(prompt_drift.words(msgid)) >= 4:
                english.append(" ".join(msgid.split()))
                german.append(" ".join(msgstr.split()))
    return english, german


def draw(population: list[str], size: int, rng: random.Random, exclude: set[int] | None = None) -> list[str]:
    pool = [i for i in range(len(population)) if not exclude or i not in exclude]
    return [population[i] for i in rng.sample(pool, min(size, len(pool)))]


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

    return {"p5": pick(0.05), "p50": pick(0.5), "p95": pick(0.95), "p99": pick(0.99), "max": round(ordered[-1], 4)}


def _case(pairs: list[tuple[list[str], list[str]]]) -> Case:
    scores = [prompt_drift.drift(prompt_drift.profile(r), prompt_drift.profile(o)) for r, o in pairs]
    ks, jsd = [s.length_ks for s in scores], [s.token_jsd for s in scores]
    return {"length_ks": _quantiles(ks), "token_jsd": _quantiles(jsd), "ks": ks, "jsd": jsd}


def null_pairs(population: list[str], ref: int, size: int, trials: int, rng: random.Random) -> list[Any]:
    """A reference and a disjoint observed sample of one population, ``trials`` times."""
    pairs = []
    for _ in range(trials):
        chosen = set(rng.sample(range(len(population)), ref))
        pairs.append(([population[i] for i in chosen], draw(population, size, rng, exclude=chosen)))
    return pairs


def shift_pairs(reference: list[str], observed: list[str], sizes: tuple[int, int], trials: int, rng: random.Random):
    ref, size = sizes
    return [(draw(reference, ref, rng), draw(observed, size, rng)) for _ in range(trials)]


def mixed_pairs(
    base: list[str], other: list[str], share: float, sizes: tuple[int, int], *, trials: int, rng: random.Random
):
    ref, size = sizes
    k = round(size * share)
    return [(draw(base, ref, rng), draw(base, size - k, rng) + draw(other, k, rng)) for _ in range(trials)]


def rate(case: Case, ks_threshold: float, jsd_threshold: float) -> float:
    hits = sum(k > ks_threshold or j > jsd_threshold for k, j in zip(case["ks"], case["jsd"], strict=True))
    return round(hits / len(case["ks"]), 4)


def populations(rng: random.Random) -> dict[str, list[str]]:
    doc_texts = docs()
    found = {
        "docs": doc_texts,
        "legal": legal(),
        "docs_short": [" ".join(t.split()[: rng.randint(8, 25)]) for t in doc_texts],
        "docs_long": [f"{a}\n\n{b}" for a, b in zip(doc_texts, rng.sample(doc_texts, len(doc_texts)), strict=True)],
    }
    ui_en, ui_de = ui_catalogs()
    if len(ui_en) >= 2 * max(SIZES):
        found["ui_en"], found["ui_de"] = ui_en, ui_de
    return found


def measure(pops: dict[str, list[str]], ref: int, trials: int, rng: random.Random) -> tuple[dict, dict]:
    nulls: dict[str, dict[int, Case]] = {}
    for name in ("docs", "legal", "ui_en", "ui_de"):
        if name in pops:  # disjoint samples: only the sizes the population holds beside the reference
            sizes = [n for n in SIZES if len(pops[name]) >= ref + n]
            nulls[name] = {n: _case(null_pairs(pops[name], ref, n, trials, rng)) for n in sizes}
    plan = [("docs", "docs_short"), ("docs", "docs_long"), ("docs", "legal")]
    if "ui_en" in pops:
        plan += [("docs", "ui_en"), ("ui_en", "ui_de")]
    shifts: dict[str, dict[int, Case]] = {
        f"{r} -> {o}": {n: _case(shift_pairs(pops[r], pops[o], (ref, n), trials, rng)) for n in SIZES} for r, o in plan
    }
    for share in (0.1, 0.25, 0.5):
        shifts[f"docs -> docs+legal {share:g}"] = {
            n: _case(mixed_pairs(pops["docs"], pops["legal"], share, (ref, n), trials=trials, rng=rng)) for n in SIZES
        }
    return nulls, shifts


def threshold_grid(nulls: dict[str, dict[int, Case]], shifts: dict[str, dict[int, Case]]) -> list[dict[str, Any]]:
    """Per pair of thresholds: the worst false-alarm rate over the populations and the detection rate, per size."""
    grid = []
    for ks_t in KS_GRID:
        for jsd_t in JSD_GRID:
            false_alarm = {n: max(rate(per[n], ks_t, jsd_t) for per in nulls.values() if n in per) for n in SIZES}
            detection = {name: {n: rate(case, ks_t, jsd_t) for n, case in per.items()} for name, per in shifts.items()}
            grid.append(
                {"length_ks": ks_t, "token_jsd": jsd_t, "false_alarm_rate": false_alarm, "detection": detection}
            )
    return grid


def _strip(section: dict[str, dict[int, Case]]) -> dict[str, Any]:
    return {
        name: {str(n): {k: v for k, v in case.items() if k not in ("ks", "jsd")} for n, case in per.items()}
        for name, per in section.items()
    }


def report(result: dict[str, Any]) -> None:
    print(f"populations: {result['populations']}")
    for name, per in result["null"].items():
        cells = [f"n={n}: ks {c['length_ks']['p99']:.3f} jsd {c['token_jsd']['p99']:.3f}" for n, c in per.items()]
        print(f"null p99   {name:28}", "  ".join(cells))
    for name, per in result["shifted"].items():
        cells = [f"n={n}: ks {c['length_ks']['p5']:.3f} jsd {c['token_jsd']['p5']:.3f}" for n, c in per.items()]
        print(f"shifted p5 {name:28}", "  ".join(cells))
    chosen = result["at_thresholds"]
    print(f"at ks {chosen['length_ks']} / jsd {chosen['token_jsd']}, judged from {result['min_prompts']} prompts:")
    print(f"  {'false-alarm rate':26}", "  ".join(f"n={n}: {r:.3f}" for n, r in chosen["false_alarm_rate"].items()))
    for name, per in chosen["detection"].items():
        print(f"  {name:26}", "  ".join(f"n={n}: {r:.2f}" for n, r in per.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--reference-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    pops = populations(rng)
    nulls, shifts = measure(pops, args.reference_size, args.trials, rng)
    grid = threshold_grid(nulls, shifts)
    thresholds = {"length_ks": prompt_drift.LENGTH_KS_THRESHOLD, "token_jsd": prompt_drift.TOKEN_JSD_THRESHOLD}
    result = {
        "benchmark": "prompt-drift-thresholds",
        "trials": args.trials,
        "reference_size": args.reference_size,
        "observed_sizes": list(SIZES),
        "min_prompts": prompt_drift.MIN_PROMPTS,
        "top_words": prompt_drift.TOP_WORDS,
        "populations": {name: len(texts) for name, texts in pops.items()},
        "language_case": "ui_en" in pops,
        "null": _strip(nulls),
        "shifted": _strip(shifts),
        "grid": grid,
        "thresholds": thresholds,
        "at_thresholds": next(
            g for g in grid if (g["length_ks"], g["token_jsd"]) == (thresholds["length_ks"], thresholds["token_jsd"])
        ),
        "seconds": round(time.perf_counter() - started, 1),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    report(result)
    print(f"wrote {OUT} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
