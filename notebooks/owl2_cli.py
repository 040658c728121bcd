"""The built mplug-owl2 program, for the notebooks.

The program is looked for in the build folder $MPLUG_OWL2_BUILD, else in
build/ at the top of the project (where scripts/setup builds it).
"""

import os
import subprocess

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
TINY = os.path.join(PROJECT, "reference_outputs", "tiny")


def program():
    build = os.environ.get("MPLUG_OWL2_BUILD", os.path.join(PROJECT, "build"))
    path = os.path.join(build, "examples", "mplug-owl2")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: not found; build the project or set MPLUG_OWL2_BUILD to its build folder")
    return path


def run(*args):
    """Runs `mplug-owl2 ARGS...` and returns its standard output; raises with its error line when it fails."""
    args = [str(a) for a in args]
    r = subprocess.run([program(), *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"mplug-owl2 {' '.join(args)}: exit code {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def trace_case(case, out, dtype="double", attention=False, model=TINY):
    """`mplug-owl2 trace` on one case of reference_outputs/tiny/cases.json, from its image files."""
    args = ["trace", "--model", model, "--out", out, "--dtype", dtype,
            "--input-ids=" + ",".join(str(i) for i in case["input_ids"]),
            "--generate", len(case["generated_ids"])]
    for image in case["images"]:
        args += ["--image", os.path.join(model, image)]
    if case.get("image_aspect_ratio"):
        args += ["--image-aspect-ratio", case["image_aspect_ratio"]]
    if case.get("ablate"):
        args += ["--mam", case["ablate"]["policy"]]
    if attention:
        args.append("--attention")
    run(*args)


def relative_error(ours, ref):
    """max|ours − ref| / rms(ref), as the parity tests measure it."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    rms = np.sqrt(np.mean(ref * ref)) if ref.size else 0.0
    return float(np.max(np.abs(ours - ref)) / (rms if rms > 0 else 1.0)) if ref.size else 0.0
