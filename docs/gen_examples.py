"""mkdocs hook: run each worked analysis in examples/ at build time and render it as a page.

Each script is copied into a scratch directory and run there with ``--quick`` (its ``OUT`` folder
is then the scratch ``output/``, so the build never writes into the checkout).  The page shows the
script's docstring, its printed output, any warnings it raised, every PNG it wrote, and its source.
Nothing is committed by hand: the outputs are always those of the code being documented.  A script
that fails fails the build.

The scripts run two at a time (the examples are single-threaded: BLAS threads are pinned to one).
Run by mkdocs (``hooks:`` in mkdocs.yml); ``python docs/gen_examples.py OUTDIR`` writes the pages
into OUTDIR instead, to look at them without a site build.  ``MIXEDPY_DOCS_EXAMPLES=skip`` builds
the pages without running the scripts (they then say so), for a quick check of the reference.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: the analyses, in the order of the site's navigation
SCRIPTS = ["quickstart", "radon", "artists", "house_prices", "people_over_time", "classrooms"]
TIMEOUT = 300  # seconds per script


@dataclass
class Run:
    name: str
    docstring: str
    source: str
    stdout: str
    stderr: str
    seconds: float
    pngs: dict[str, bytes] = field(default_factory=dict)
    ran: bool = True


def run_example(name: str) -> Run:
    """Run examples/<name>.py --quick in a scratch copy; collect its output and figures."""
    script = EXAMPLES / f"{name}.py"
    source = script.read_text()
    with tempfile.TemporaryDirectory(prefix=f"mixedpy-doc-{name}-") as tmp:
        shutil.copy(script, tmp)
        env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   MKL_NUM_THREADS="1", PYTHONWARNINGS="default")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, f"{name}.py", "--quick"], cwd=tmp, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"examples/{name}.py --quick failed (exit {proc.returncode}):\n{proc.stderr}")
        out = Path(tmp) / "output"
        pngs = {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))} if out.is_dir() else {}
    return Run(name, ast.get_docstring(ast.parse(source)) or "", source, proc.stdout, proc.stderr, seconds, pngs)


def skipped(name: str) -> Run:
    """A page that says the script was not run (MIXEDPY_DOCS_EXAMPLES=skip: a quick build of the
    reference pages only; CI never sets it)."""
    source = (EXAMPLES / f"{name}.py").read_text()
    return Run(name, ast.get_docstring(ast.parse(source)) or "", source,
               "(not run: this build set MIXEDPY_DOCS_EXAMPLES=skip)", "", 0.0, ran=False)


def run_all(names=SCRIPTS, workers: int = 2) -> list[Run]:
    if os.environ.get("MIXEDPY_DOCS_EXAMPLES") == "skip":
        return [skipped(n) for n in names]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run_example, names))


def _fence(text: str, lang: str = "text") -> str:
    # a fence longer than any backtick run in the text, so the text cannot close it
    longest = max((len(run) for run in text.replace("\n", " ").split() if set(run) == {"`"}), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}\n"


def page(run: Run) -> str:
    """The Markdown page of one analysis."""
    title, _, rest = run.docstring.partition("\n")
    how = (f"run with `--quick` when this site was built ({run.seconds:.0f} s). The full run "
           f"(`python examples/{run.name}.py`) uses longer chains and more simulations, so its "
           f"simulation-based numbers differ a little" if run.ran else
           "**not run in this build** (MIXEDPY_DOCS_EXAMPLES=skip)")
    parts = [f"# {title.strip() or run.name}\n", f"*`examples/{run.name}.py`, {how}.*\n"]
    if rest.strip():
        parts.append(_fence(rest.strip("\n")))
    if run.pngs:
        parts.append("## Figures\n")
        for png in run.pngs:
            parts.append(f"![{png}]({png})\n")
    parts.append("## Printed output\n")
    parts.append(_fence(run.stdout or "(nothing printed)"))
    if run.stderr.strip():
        parts.append('??? warning "Warnings the run raised"\n\n' +
                     "".join("    " + line + "\n" for line in _fence(run.stderr).splitlines()))
    parts.append('??? example "Source"\n\n' +
                 "".join(("    " + line).rstrip() + "\n" for line in _fence(run.source, "python").splitlines()))
    return "\n".join(parts)


def index(runs: list[Run]) -> str:
    rows = "\n".join(f"| [{(r.docstring.partition(chr(10))[0] or r.name).strip()}]({r.name}.md) | "
                     f"`examples/{r.name}.py` | {len(r.pngs)} |" for r in runs)
    return ("# Worked analyses\n\nEach page is produced by running the script in `examples/` when the site is "
            "built, so the output and figures shown are those of the current code.\n\n"
            "| analysis | script | figures |\n|---|---|---|\n" + rows + "\n")


def generated_files(runs: list[Run]) -> dict[str, bytes | str]:
    """Site paths (relative to docs/) and their contents."""
    files: dict[str, bytes | str] = {"examples/index.md": index(runs)}
    for r in runs:
        files[f"examples/{r.name}.md"] = page(r)
        files.update({f"examples/{png}": data for png, data in r.pngs.items()})
    return files


# -- mkdocs hook --------------------------------------------------------------------------------

def on_files(files, config):
    """Add the example pages and their figures to the site (mkdocs >= 1.6 generated files)."""
    from mkdocs.structure.files import File

    for path, content in generated_files(run_all()).items():
        files.append(File.generated(config, path, content=content))
    return files


if __name__ == "__main__":
    dest = Path(sys.argv[1] if len(sys.argv) > 1 else "docs-examples")
    for path, content in generated_files(run_all()).items():
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        (target.write_bytes if isinstance(content, bytes) else target.write_text)(content)
    print(f"wrote {dest}/examples/")
