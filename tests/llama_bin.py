"""Where llama.cpp's own programs are for the tests that run them: LLAMA_CPP_BIN (the folder
.ci/build-llama-tools.sh prints; .ci/run builds it and sets it), PATH, else built once from the vendored source
by that script (into .llama-tools in the checkout, ~15 minutes on 2 cores; cached)."""

import os
import subprocess

import pytest


def llama_bin(programs: tuple[str, ...]) -> str:
    for d in (os.environ.get("LLAMA_CPP_BIN"), *os.environ.get("PATH", "").split(os.pathsep)):
        if d and all(os.access(os.path.join(d, p), os.X_OK) for p in programs):
            return d
    script = os.path.join(os.path.dirname(__file__), os.pardir, ".ci", "build-llama-tools.sh")
    r = subprocess.run(["bash", script], capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        pytest.fail(f"could not build llama.cpp's programs ({script}): {r.stderr[-800:]}")
    return r.stdout.strip().splitlines()[-1]
