"""Coverage-guided fuzzing of every parser with atheris (libFuzzer), outside CI.

``.venv/bin/python -m bench.fuzz [--runs N] [parser ...]`` fuzzes each target of
``tests/fuzztargets.py`` for N inputs (default 1,000,000) in its own child process, starting
from the seeds in ``tests/fuzz_corpus/<parser>/``; an exception other than the parser's own
error type is a crash: libFuzzer stops and writes the input, which this script copies into
the corpus as ``crash-*`` so the regression test (``tests/unit/test_fuzz_parsers.py``) keeps
it. Counts go to ``bench/results/fuzz.json``.

atheris is not a test dependency (it is built for a few CPython versions only); it is
installed on first use into ``bench/.work/atheris`` (``pip install --target``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ATHERIS = REPO / "bench" / ".work" / "atheris"
RESULTS = REPO / "bench" / "results" / "fuzz.json"
MAX_LEN = 4096  # bytes per input; the parsers' own limits are larger only for framing


def ensure_atheris() -> None:
    if not (ATHERIS / "atheris").is_dir():
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(ATHERIS)]
        subprocess.run([*cmd, "atheris"], check=True)


def child(name: str, libfuzzer_args: list[str]) -> None:
    """Inside the child: instrument the package, then hand the target to libFuzzer."""
    sys.path.insert(0, str(ATHERIS))
    sys.path.insert(0, str(REPO))
    import atheris  # type: ignore[import-untyped]  # noqa: PLC0415 - on sys.path only now

    with atheris.instrument_imports(include=["tlspolicy"]):
        from tests import fuzztargets  # noqa: PLC0415

    def one(data: bytes) -> None:
        fuzztargets.run(name, data)

    atheris.Setup([sys.argv[0], *libfuzzer_args], one)
    atheris.Fuzz()


def fuzz(name: str, runs: int, work: Path) -> dict[str, Any]:
    """One parser in a child process; returns its counts and any crash file."""
    corpus = work / name
    shutil.copytree(REPO / "tests" / "fuzz_corpus" / name, corpus)
    artifacts = work / f"{name}-artifacts"
    artifacts.mkdir()
    args = [f"-runs={runs}", f"-max_len={MAX_LEN}", f"-artifact_prefix={artifacts}/",
            "-print_final_stats=1", str(corpus)]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bench.fuzz", "--child", name, "--", *args],
        cwd=REPO, capture_output=True, text=True, check=False,
        env={**os.environ, "TLSPOLICY_FUZZ_TMP": str(work)},
    )  # fmt: skip
    seconds = time.monotonic() - started
    stats = dict(re.findall(r"^stat::(\w+):\s+(\d+)", done.stderr, re.MULTILINE))
    crashes = []
    for crash in artifacts.iterdir():
        kept = REPO / "tests" / "fuzz_corpus" / name / crash.name
        shutil.copyfile(crash, kept)
        crashes.append(str(kept.relative_to(REPO)))
    if crashes:
        print(done.stderr[-3000:], file=sys.stderr)
    executed = int(stats.get("number_of_executed_units", 0))
    return {
        "inputs": executed,
        "seconds": round(seconds, 1),
        "per_second": round(executed / seconds) if seconds else 0,
        "corpus_size": sum(1 for _ in corpus.iterdir()),
        "crashes": crashes,
        "exit": done.returncode,
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        child(argv[1], argv[3:])
        return 0
    from tests.fuzztargets import TARGETS  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="python -m bench.fuzz",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=1_000_000, help="inputs per parser")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("parsers", nargs="*", help=f"some of: {', '.join(TARGETS)}")
    args = parser.parse_args(argv)
    unknown = set(args.parsers) - set(TARGETS)
    if unknown:
        parser.error(f"unknown parsers: {', '.join(sorted(unknown))}")
    ensure_atheris()
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    with tempfile.TemporaryDirectory(prefix="tlspolicy-fuzz-") as tmp:
        for name in args.parsers or list(TARGETS):
            out = fuzz(name, args.runs, Path(tmp))
            out["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            results[name] = out
            print(
                f"{name:<14} {out['inputs']:>9} inputs in {out['seconds']:>7} s"
                f"  ({out['per_second']}/s)  crashes {len(out['crashes'])}",
                flush=True,
            )
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return 1 if any(r["crashes"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
