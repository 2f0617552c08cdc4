"""The machine: what it is, pinning processes to cores, and py-spy profiles of the server."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.servers import WORK

TOOLS_VENV = WORK / "tools-venv"
PY_SPY = TOOLS_VENV / "bin" / "py-spy"
PROFILE_RATE_HZ = 200  # py-spy samples per second
TOP_FRAMES = 15


def machine() -> dict[str, Any]:
    """The facts the README's Performance section names."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    venv_python = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
    version = subprocess.run(
        [str(venv_python), "-c", "import sys; print(sys.version.split()[0])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": version,
        "kernel": platform.release(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (through ``/proc/<pid>/task/*/children``)."""
    found = [pid]
    index = 0
    while index < len(found):
        task_dir = Path(f"/proc/{found[index]}/task")
        index += 1
        try:
            tasks = list(task_dir.iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            found.extend(int(c) for c in children if int(c) not in found)
    return found


def pin(pid: int, core: int) -> None:
    """Pin every thread of ``pid`` and of all its descendants to ``core``."""
    for each in descendants(pid):
        subprocess.run(
            ["taskset", "-a", "-p", "-c", str(core), str(each)],
            check=False,
            capture_output=True,
        )


def ensure_py_spy() -> Path:
    if not PY_SPY.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(TOOLS_VENV)], check=True)
        subprocess.run(
            [str(TOOLS_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "py-spy"],
            check=True,
        )
    return PY_SPY


def start_profile(pid: int, seconds: float, output: Path, core: int) -> subprocess.Popen[bytes]:
    """py-spy record in raw (collapsed stack) format, on the load core.

    ``--nonblocking`` reads the server's memory without stopping it, so the profiled pass
    runs at (nearly) full speed; SIGINT ends the recording early and still writes it.
    """
    argv = [
        "taskset", "-c", str(core), str(PY_SPY), "record",
        "--pid", str(pid),
        "--duration", str(int(seconds)),
        "--rate", str(PROFILE_RATE_HZ),
        "--format", "raw",
        "--output", str(output),
        "--nonblocking",
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frame_name(frame: str) -> str:
    """``answer (tlspolicy/service.py:123)`` -> ``answer (tlspolicy/service.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})" if path else name


def summarize_profile(raw: Path) -> dict[str, Any]:
    """Top frames by own time and by inclusive time, as shares of all samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if total == 0:
        return {"samples": 0, "own": [], "inclusive": []}

    def top(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": frame, "share": round(n / total, 4)}
            for frame, n in counter.most_common(TOP_FRAMES)
        ]

    # Our frames below the entry point (main/run/_run hold every sample and say nothing).
    ours = Counter(
        {
            f: n
            for f, n in inclusive.items()
            if "tlspolicy/" in f and "tlspolicy/cli/main.py" not in f
        }
    )
    return {"samples": total, "own": top(own), "inclusive": top(ours)}
