"""``rayapp bench all``: every benchmark job of the project, one report.

Each benchmark is registered with :func:`register_bench` (``rayapp.eval._headlines``): the job
module, its quick and full configs, what it needs, and a *headline* function that reads the job's
JSON and returns :class:`Figure` rows (the figure, its baseline measured in the same run, their
ratio, and the paper's or the issue's number it aims at). :func:`run_benchmarks` runs the jobs one
after another as subprocesses (each starts its own Ray cluster on the machine, as a user's run
would), keeps each job's log, and writes ``bench_all.json``, ``bench_all.md`` and
``bench_all.png`` (the ratios) to ``results_dir``; with ``benchmarks_md`` it rewrites that file's
summary section for the mode (quick or full) between its markers.

A job that fails or times out is recorded with its exit code and the end of its log, and the others
still run; a job whose data (``../shared/data``) is absent is skipped with the reason.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Sequence

import yaml

from rayapp._internal.artifacts import write_json_atomic
from rayapp._internal.registry import registrar
from rayapp.eval import _cell

__all__ = ["BENCHMARKS", "Bench", "Figure", "register_bench", "run_benchmarks", "write_summary_section",
           "config_model"]

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Figure:
    """One headline number. ``ratio`` is ``value / baseline`` unless the job reports its own (a
    speedup measured the other way round, a difference in points); ``better`` says which way is
    good; ``target`` is the paper's (or the issue's) number it aims at, ``met`` whether this run
    reaches the issue's goal (None where there is no numeric goal)."""

    figure: str
    value: Optional[float]
    baseline_name: str = ""
    baseline: Optional[float] = None
    ratio: Optional[float] = None
    better: Literal["higher", "lower"] = "higher"
    target: str = ""
    met: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.ratio is None and _num(self.value) and _num(self.baseline) and self.baseline != 0:
            self.ratio = self.value / self.baseline


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class Bench:
    """A registered benchmark. ``fresh``: config keys (dotted) of folders removed before the run,
    so a reused output does not stand in for a new measurement; ``before``: ``(job module, config)``
    pairs run first (e.g. the data a benchmark reads), per mode."""

    name: str
    capability: str
    issue: int
    job: str
    config: str
    quick_config: str
    model: str  # "module:Class" of the job's config model
    headline: Callable[[dict[str, Any]], list[Figure]]
    needs_data: bool = False
    fresh: Sequence[str] = ()
    before: dict[str, Sequence[tuple[str, str]]] = field(default_factory=dict)

    def config_path(self, mode: str) -> Path:
        return REPO / (self.quick_config if mode == "quick" else self.config)


BENCHMARKS: dict[str, Bench] = {}
_register = registrar(BENCHMARKS, "benchmark")


def register_bench(name: str, **spec: Any) -> Callable:
    """``@register_bench("embed", capability=..., issue=3, job="jobs.bench_embed", ...)`` on the
    headline function of that job's JSON."""

    def deco(fn: Callable[[dict[str, Any]], list[Figure]]) -> Callable:
        _register(name)(Bench(name=name, headline=fn, **spec))
        return fn

    return deco


def config_model(bench: Bench) -> type:
    module, cls = bench.model.split(":")
    return getattr(importlib.import_module(module), cls)


def _get(raw: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        raw = raw.get(part) if isinstance(raw, dict) else None
    return raw


def _data_available() -> bool:
    from rayapp.data.sets import default_data_dir

    try:
        default_data_dir()
    except FileNotFoundError:
        return False
    return True


def _tail(path: Path, lines: int = 12) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _run_job(module: str, config: Path, log: Path, timeout_s: float, cwd: Path) -> tuple[str, int | None, float]:
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {sys.executable} -m {module} --config {config}\n")
        out.flush()
        # its own process group, so a timeout also ends what the job started (Ray's processes)
        proc = subprocess.Popen([sys.executable, "-m", module, "--config", str(config)], cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            out.write(f"\n[bench all] killed after {timeout_s:.0f} s\n")
            return "timeout", None, time.perf_counter() - t0
        except KeyboardInterrupt:  # Ctrl-C reaches only this process: end the job's group too
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    return ("ok" if rc == 0 else "failed"), rc, time.perf_counter() - t0


def _one(bench: Bench, mode: str, collect: bool, config: Path, out_dir: Path, timeout_s: float,
         cwd: Path) -> dict[str, Any]:
    raw = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    # where the job writes: its config's results_dir, else its config model's default
    results_dir = Path(raw.get("results_dir") or config_model(bench).model_fields["results_dir"].default)
    results_dir = results_dir if results_dir.is_absolute() else cwd / results_dir
    row: dict[str, Any] = {"bench": bench.name, "capability": bench.capability, "issue": bench.issue,
                           "command": f"python -m {bench.job} --config {_rel(config, cwd)}",
                           "results": str(results_dir / f"{bench.job.split('.')[-1]}.json"), "figures": []}
    if bench.needs_data and not _data_available():
        row.update(status="skipped", reason="needs ../shared/data (or $RAYAPP_DATA_DIR), absent here")
        return row
    if not collect:
        log = out_dir / "logs" / f"{bench.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("", encoding="utf-8")
        for key in bench.fresh:
            folder = _get(raw, key)
            if folder:
                shutil.rmtree(Path(folder) if Path(folder).is_absolute() else cwd / folder, ignore_errors=True)
        seconds = 0.0
        for module, cfg in bench.before.get(mode, ()):
            status, rc, s = _run_job(module, REPO / cfg, log, timeout_s, cwd)
            seconds += s
            if status != "ok":
                row.update(status=status, rc=rc, seconds=round(seconds, 1), log=str(log),
                           reason=f"{module} {status}: " + _tail(log, 3))
                return row
        status, rc, s = _run_job(bench.job, config, log, timeout_s, cwd)
        row.update(status=status, rc=rc, seconds=round(seconds + s, 1), log=str(log))
        if status != "ok":
            row["reason"] = _tail(log)
            return row
    path = Path(row["results"])
    if not path.is_file():
        row.update(status="failed" if not collect else "missing", reason=f"no results at {path}")
        return row
    data = json.loads(path.read_text(encoding="utf-8"))
    row["date"] = (data.get("machine") or {}).get("date")
    if collect:
        row["status"] = "collected"
    try:
        row["figures"] = [asdict(f) for f in bench.headline(data)]
    except (KeyError, TypeError, IndexError, ValueError) as e:
        row.update(status="failed", reason=f"its JSON lacks a headline field: {type(e).__name__}: {e}")
    return row


def _rel(path: Path, cwd: Path) -> str:
    try:
        return str(path.resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(path)


def run_benchmarks(mode: Literal["quick", "full"] = "quick", only: Sequence[str] = (), skip: Sequence[str] = (),
                   collect: bool = False, results_dir: Optional[Path] = None,
                   configs: Optional[dict[str, Path]] = None, timeout_s: float = 3600.0,
                   benchmarks_md: Optional[Path] = None, cwd: Path = REPO) -> dict[str, Any]:
    """Run (or with ``collect`` only read) the registered benchmarks in registration order, which
    puts a benchmark after those it reads from. ``configs`` replaces a benchmark's config file.
    Returns the report (also written to ``results_dir``)."""
    from rayapp.eval import machine_info

    unknown = sorted((set(only) | set(skip) | set(configs or {})) - set(BENCHMARKS))
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}")
    if results_dir is None:
        results_dir = cwd / "results" / "bench_all" if mode == "full" else cwd / "results" / "quick" / "bench_all"
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = []
    for name, bench in BENCHMARKS.items():
        if (only and name not in only) or name in skip:
            continue
        config = Path((configs or {}).get(name) or bench.config_path(mode))
        row = _one(bench, mode, collect, config, results_dir, timeout_s, cwd)
        rows.append(row)
        print(f"[bench all] {name}: {row['status']}"
              + (f" in {row['seconds']} s" if "seconds" in row else "")
              + (f" ({row['reason'].splitlines()[-1]})" if row.get("reason") else ""), flush=True)
    argv = ["rayapp", "bench", "all", *(["--full"] if mode == "full" else []), *(["--collect"] if collect else []),
            *(["--only", ",".join(only)] if only else []), *(["--skip", ",".join(skip)] if skip else [])]
    report = {"mode": mode, "command": " ".join(argv), "collect": collect, "results_dir": str(results_dir),
              "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"), "machine": machine_info(),
              "seconds": round(time.perf_counter() - t0, 1), "benchmarks": rows}
    write_json_atomic(results_dir / "bench_all.json", report)
    (results_dir / "bench_all.md").write_text(render_markdown(report, heading="#"), encoding="utf-8")
    _plot(report, results_dir / "bench_all.png")
    if benchmarks_md is not None:
        write_summary_section(Path(benchmarks_md), report)
    return report


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return _cell(v)


def render_markdown(report: dict[str, Any], heading: str = "##") -> str:
    m = report["machine"]
    lines = [f"{heading} `{report['command']}` ({report['mode']} settings)", "",
             f"Run {report['date']} on {m.get('cpu_count')} CPUs ({m.get('machine')}), torch {m.get('torch')}, "
             f"CUDA {'yes' if m.get('cuda') else 'no'}; {report['seconds']} s in all. Ratio = figure / baseline "
             "unless the job reports its own; \"met\" is the issue's goal where it has a number.", "",
             "| capability (issue) | benchmark | figure | value | baseline (same run) | baseline value | ratio "
             "| better | aims at | met |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["benchmarks"]:
        cap = f"{row['capability']} ({row['issue']})"
        if not row["figures"]:
            why = row.get("reason", "").splitlines()[-1:] or [""]
            lines.append(f"| {cap} | {row['bench']} | {row['status']}: {_fmt(why[0])} | | | | | | | |")
            continue
        for f in row["figures"]:
            lines.append(f"| {cap} | {row['bench']} | {_fmt(f['figure'])} | {_fmt(f['value'])} | "
                         f"{_fmt(f['baseline_name'])} | {_fmt(f['baseline'])} | {_fmt(f['ratio'])} | {f['better']} | "
                         f"{_fmt(f['target'])} | {_fmt(f['met'])} |")
    lines += ["", "| benchmark | status | seconds | command |", "|---|---|---|---|"]
    lines += [f"| {r['bench']} | {r['status']} | {_fmt(r.get('seconds'))} | `{r['command']}` |"
              for r in report["benchmarks"]]
    return "\n".join(lines) + "\n"


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [(f"{r['bench']}: {f['figure']} / {f['baseline_name']}", f["ratio"], f["met"]) for r in report["benchmarks"]
            for f in r["figures"] if _num(f["ratio"]) and f["ratio"] > 0]
    fig, ax = plt.subplots(figsize=(10, 0.3 * max(len(bars), 3) + 1.2))
    if bars:
        labels, ratios, met = zip(*bars)
        colors = ["tab:green" if m else "tab:red" if m is False else "tab:gray" for m in met]
        ax.barh(range(len(bars)), ratios, color=colors)
        ax.set_yticks(range(len(bars)), [lab[:90] for lab in labels], fontsize=6)
        ax.invert_yaxis()
        ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("ratio to the same run's baseline (log); green: goal met, red: not met, grey: no goal", fontsize=8)
    ax.set_title(f"rayapp bench all ({report['mode']}), {report['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markers(mode: str) -> tuple[str, str]:
    return f"<!-- bench-all:{mode}:start -->", f"<!-- bench-all:{mode}:end -->"


def write_summary_section(path: Path, report: dict[str, Any]) -> None:
    """Replace the report's section (between ``<!-- bench-all:<mode>:start/end -->``) of ``path``,
    or insert it after the first heading when the file has none yet. The rest is left as it is."""
    start, end = _markers(report["mode"])
    section = f"{start}\n{render_markdown(report)}{end}"
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        first, _, after = text.partition("\n")
        text = f"{first}\n\n{section}\n{after}"
    path.write_text(text, encoding="utf-8")


# the registrations (last: they import Figure and register_bench from this module)
from rayapp.eval import _headlines  # noqa: E402,F401
