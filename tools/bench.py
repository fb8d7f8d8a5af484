"""Run every benchmark of the project and write one table (markdown and JSON).

Each ``bench/bench_*.py`` accepts ``--out FILE`` and writes JSON; ``rows_of`` turns the shapes they
write into rows: an explicit ``figures`` list, or sections of numbers where a ``bare_*`` / ``baseline*``
section is the same-run baseline of the others, plus top-level numbers (ratios). Figures are printed,
never asserted: a benchmark's baseline is measured in the same run on the same machine. Output:
``bench/results/latest.md`` (the table the README quotes) and ``latest.json`` (everything, raw).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
RESULTS = BENCH_DIR / "results"


def machine() -> dict[str, Any]:
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 1024**2, 1)
    except OSError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "python": platform.python_version(),
            "os": f"{platform.system()} {platform.release()}", "load_1m": round(os.getloadavg()[0], 1)}


_BASELINE_WORDS = ("baseline", "bare", "base_")
_SETTINGS = {"concurrency", "phase_seconds", "seconds", "cpus", "cores", "jobs", "submitted", "workers", "duration_s",
             "prefetch_jobs",
             "backend_delay_s"}
_UNITS = (("_rps", "req/s"), ("_per_s", "1/s"), ("_ms", "ms"), ("_seconds", "s"), ("_s", "s"), ("_pct", "%"),
          ("_percent", "%"), ("_fraction", ""), ("_bytes", "B"), ("ratio", "x"))


def _unit(key: str) -> str:
    return next((unit for suffix, unit in _UNITS if key.endswith(suffix) or (suffix == "ratio" and suffix in key)), "")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def settings_of(result: dict[str, Any]) -> dict[str, Any]:
    """Run settings worth printing next to the benchmark's name (concurrency, phase length, ...)."""
    return {k: v for k, v in result.items() if k in _SETTINGS and _is_number(v)}


def rows_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows of one benchmark's JSON, whatever shape it has.

    - ``{"figures": [{"metric", "value", "unit", "baseline_metric", "baseline_value"}]}`` is used as is;
    - sections (nested objects of numbers) are paired: a section named like ``bare_*`` / ``baseline*``
      (or named by ``"baseline": "<section>"``) is the same-run baseline of every other section, figure
      by figure (``api.p50_ms`` next to ``bare_sqs.p50_ms``), except the sections listed in ``"unpaired"``,
      which measure something the baseline has no counterpart of (a ratio of unrelated keys that share a
      name says nothing);
    - remaining top-level numbers (ratios, fractions) are rows of their own; run settings are left out
      (they are shown with the benchmark's name).
    """
    if isinstance(result.get("figures"), list):
        return result["figures"]
    sections = {k: v for k, v in result.items() if isinstance(v, dict) and any(_is_number(x) for x in v.values())}
    named = result.get("baseline") if isinstance(result.get("baseline"), str) else None
    base_name = named if named in sections else next(
        (k for k in sections if any(w in k.lower() for w in _BASELINE_WORDS)), None)
    rows: list[dict[str, Any]] = []
    base = sections.get(base_name or "", {})
    unpaired = set(result.get("unpaired") or ())
    for name, section in sections.items():
        if name == base_name:
            continue
        for key, value in section.items():
            if not _is_number(value) or key in _SETTINGS:
                continue
            row = {"metric": f"{name} {key}", "value": value, "unit": _unit(key) or _unit(name)}
            if _is_number(base.get(key)) and name not in unpaired:
                row.update(baseline_metric=f"{base_name} {key}", baseline_value=base[key])
            rows.append(row)
    if base_name and not rows:  # only a baseline section: show it plainly
        rows = [{"metric": f"{base_name} {k}", "value": v, "unit": _unit(k) or _unit(base_name)}
                for k, v in base.items() if _is_number(v)]
    for key, value in result.items():
        if _is_number(value) and key not in _SETTINGS and key != "name":
            rows.append({"metric": key, "value": value, "unit": _unit(key)})
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return "" if value is None else str(value)


def _label(bench: dict[str, Any]) -> str:
    settings = settings_of(bench.get("result") or {})
    extra = ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:g}{' s' if k.endswith('_s') else ''}"
                      for k, v in settings.items())
    return f"{bench['name']} ({extra})" if extra else bench["name"]


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    load = f", load average {m['load_1m']} at the start" if m.get("load_1m") is not None else ""
    lines = [f"Measured {report['date']} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB{load}), "
             f"Python {m['python']}, {m['os']}, with `make bench`. Each figure sits next to its baseline "
             f"measured in the same run on the same machine; ratio = value / baseline.", "",
             "| benchmark | figure | value | unit | same-run baseline | baseline value | ratio |",
             "|---|---|---|---|---|---|---|"]
    for bench in report["benchmarks"]:
        if bench.get("error"):
            lines.append(f"| {bench['name']} | failed: {bench['error']} | | | | | |")
            continue
        label = _label(bench)
        for row in rows_of(bench["result"]):
            ratio = row.get("ratio")
            if ratio is None and row.get("baseline_value") and _is_number(row.get("value")):
                ratio = row["value"] / row["baseline_value"]
            lines.append(f"| {label} | {row.get('metric')} | {_fmt(row.get('value'))} | {row.get('unit', '')} "
                         f"| {row.get('baseline_metric', '')} | {_fmt(row.get('baseline_value'))} | {_fmt(ratio)} |")
            label = ""
    notes = [f"- {b['name']}: {b['result']['note']}" for b in report["benchmarks"]
             if isinstance(b.get("result"), dict) and isinstance(b["result"].get("note"), str)]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def run_one(script: Path, timeout: int) -> dict[str, Any]:
    name = script.stem.removeprefix("bench_")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        print(f"== {script.name}", flush=True)
        started = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, str(script), "--out", str(out)], cwd=ROOT, timeout=timeout,
                                  check=False, stderr=subprocess.PIPE, text=True)
        except subprocess.TimeoutExpired:
            return {"name": name, "error": f"timed out after {timeout}s"}
        if proc.stderr:
            sys.stderr.write(proc.stderr)
        if proc.returncode != 0 or not out.exists():
            last = (proc.stderr or "").strip().splitlines()[-1:] or [""]
            return {"name": name, "error": f"exit {proc.returncode} {last[0][:160]}".strip()}
        try:
            result = json.loads(out.read_text())
        except ValueError as exc:
            return {"name": name, "error": f"--out is not JSON: {exc}"}
        return {"name": name, "script": script.name, "seconds": round(time.monotonic() - started, 1),
                "result": result}


README_BEGIN = "<!-- bench-table:begin (written by tools/bench.py) -->"
README_END = "<!-- bench-table:end -->"


def quote_in_readme(table: str, readme: Path = ROOT / "README.md") -> None:
    """Put the full run's table into the README, so the figures it quotes are the measured ones."""
    text = readme.read_text()
    if README_BEGIN in text and README_END in text:
        head, rest = text.split(README_BEGIN, 1)
        readme.write_text(head + README_BEGIN + "\n" + table + README_END + rest.split(README_END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="benchmark names (bench_<name>.py) to run")
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    if not scripts:
        print("no benchmarks found under bench/", file=sys.stderr)
        return 1
    report = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
              "benchmarks": [run_one(s, args.timeout) for s in scripts]}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    table = render(report)
    (args.results / "latest.md").write_text(table)
    if args.results == RESULTS and not args.only:
        quote_in_readme(table)
    print(table)
    return 1 if any(b.get("error") for b in report["benchmarks"]) else 0


if __name__ == "__main__":
    sys.exit(main())
