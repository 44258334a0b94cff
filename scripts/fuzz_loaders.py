"""Long fuzzing runs of every file loader; prints JSON counts per loader.

Uses the targets and mutation strategies of ``tests/test_fuzz_loaders.py`` (the CI
version runs a few hundred derandomized examples each and fails on the first bad
one); here every case is counted as

* ``clean``: the loader raised ``langfield.types.LangfieldError`` (a one-line user error),
* ``accepted``: it returned data that passed the test's validity checks,
* ``other``: any other exception, or accepted data that failed those checks (a bug);
  the first few tracebacks are printed with the case that caused them.

    python scripts/fuzz_loaders.py --cases 10000 [--seed 0] [--only transforms.json] [--show 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz_targets", ROOT / "tests" / "test_fuzz_loaders.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is being built
    spec.loader.exec_module(mod)
    return mod


def fuzz_target(mod, name: str, ws: Path, cases: int, seed: int, show: int) -> dict:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hyp_seed

    from langfield.types import LangfieldError

    target = mod.TARGETS[name]
    counts = {"clean": 0, "accepted": 0, "other": 0}
    others: list[dict] = []
    kinds: dict[str, int] = {}

    @hyp_seed(seed)
    @settings(max_examples=cases, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(target.strategy(ws))
    def probe(case) -> None:
        try:
            target.run(case, ws)
            counts["accepted"] += 1
        except LangfieldError:
            counts["clean"] += 1
        except Exception as exc:  # noqa: BLE001 - counting every kind of failure is the point
            counts["other"] += 1
            kind = f"{type(exc).__name__} at {traceback.extract_tb(exc.__traceback__)[-1].filename.split('/')[-1]}"
            kinds[kind] = kinds.get(kind, 0) + 1
            if len(others) < show:
                others.append({"case": repr(case)[:400], "traceback": traceback.format_exc(limit=8)})

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy overflow warnings of absurd values are expected
        probe()
    return {**counts, "total": sum(counts.values()), "seconds": round(time.perf_counter() - t0, 1),
            "other_kinds": kinds, "first_others": others}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1000, help="cases per loader")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", action="append", help="fuzz only this target (repeatable)")
    ap.add_argument("--show", type=int, default=3, help="tracebacks of 'other' outcomes to print per loader")
    args = ap.parse_args()
    mod = _fuzz_module()
    names = args.only or list(mod.TARGETS)
    unknown = [n for n in names if n not in mod.TARGETS]
    if unknown:
        ap.error(f"unknown target(s) {unknown}; known: {list(mod.TARGETS)}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        ws = mod.build_workspace(Path(tmp))
        for name in names:
            results[name] = fuzz_target(mod, name, ws, args.cases, args.seed, args.show)
            print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    total_other = sum(r["other"] for r in results.values())
    print(json.dumps({"cases_per_loader": args.cases, "seed": args.seed, "loaders": results,
                      "total_other": total_other}, indent=1))
    return 0 if total_other == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
