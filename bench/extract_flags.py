"""Record llama.cpp's command-line flags from the vendored source (llama-cpp-python sdist).

Usage: python -m bench.extract_flags SDIST_OR_DIR > tests/fixtures/llama_cpp_flags.json
common/arg.cpp (llama-server, llama-cli: every {"-x", "--long"} of add_opt) and
tools/quantize/quantize.cpp (llama-quantize: every "--flag" it compares argv against).
"""

from __future__ import annotations

import json
import re
import sys
import tarfile


def _read(src: str, suffix: str) -> str:
    if src.endswith((".tar.gz", ".tgz")):
        with tarfile.open(src) as tf:
            member = next(m for m in tf.getmembers() if m.name.endswith(suffix))
            return tf.extractfile(member).read().decode()
    import glob
    return open(glob.glob(f"{src}/**/{suffix}", recursive=True)[0]).read()


def main() -> None:
    src = sys.argv[1]
    arg = _read(src, "vendor/llama.cpp/common/arg.cpp")
    server = set()
    # a boolean option lists its negative forms in a second brace group: {"--repack"}, {"-nr", "--no-repack"}
    for m in re.finditer(r"add_opt\(common_arg\(\s*\{([^}]*)\}(?:\s*,\s*\{([^}]*)\})?", arg):
        for group in m.groups():
            server.update(re.findall(r'"(-{1,2}[\w\-]+)"', group or ""))
    quant = _read(src, "vendor/llama.cpp/tools/quantize/quantize.cpp")
    qflags = set(re.findall(r'strcmp\(argv\[arg_idx\], "(--?[\w\-]+)"\)', quant))
    json.dump({"source": src.split("/")[-1], "llama-server": sorted(server), "llama-quantize": sorted(qflags)},
              sys.stdout, indent=1)


if __name__ == "__main__":
    main()
