#!/usr/bin/env bash
# Build llama.cpp's programs the export tests and bench.cpu_truth run (llama-server, llama-cli, llama-fit-params,
# llama-quantize, llama-bench) and ggml-rpc-server, with the RPC backend on (plans over several machines: the
# cluster tests start real RPC servers and run llama-server --rpc against them), from
# the llama.cpp that llama-cpp-python 0.3.36 vendors, and print their folder. Cached by source: a second run on
# the same machine reuses the build (LLAMA_TOOLS_CACHE, default .llama-tools in the checkout; .ci/run keeps it
# in ~/.cache/planner-ci between CI runs).
# The source: the trimmed copy in ../shared/device when the checkout has it, else llama-cpp-python's sdist from
# the package index (pip download). The server's web UI is replaced by a one-page stub (no npm build).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${LLAMA_TOOLS_CACHE:-$here/.llama-tools}/llama-cpp-python-0.3.36"
targets=(llama-server llama-cli llama-fit-params llama-quantize llama-bench ggml-rpc-server)
bin="$cache/build/bin"
built() { for t in "${targets[@]}"; do [ -x "$bin/$t" ] || return 1; done; }
if built; then
  echo "$bin"; exit 0
fi
mkdir -p "$cache"
src="$cache/src"
if [ ! -f "$src/CMakeLists.txt" ]; then
  tmp="$(mktemp -d)"
  trimmed="$here/../shared/device/llama-cpp-python-0.3.36-trimmed.tar.gz"
  if [ -f "$trimmed" ]; then
    tar xzf "$trimmed" -C "$tmp"
  else
    pip download llama-cpp-python==0.3.36 --no-deps --no-binary :all: -d "$tmp" -q >&2
    tar xzf "$tmp"/llama_cpp_python-0.3.36.tar.gz -C "$tmp"
  fi
  rm -rf "$src" && mv "$tmp/llama_cpp_python-0.3.36/vendor/llama.cpp" "$src" && rm -rf "$tmp"
  ui="$src/tools/ui" && rm -rf "$ui" && mkdir -p "$ui"
  cat > "$ui/ui.h" <<'H'
#pragma once
#include <string>
#include <vector>
#include <cstddef>
struct llama_ui_asset { std::string name; std::string type; std::string etag; const unsigned char * data; size_t size; };
const std::vector<llama_ui_asset> & llama_ui_get_assets();
const llama_ui_asset * llama_ui_find_asset(const std::string & name);
bool llama_ui_use_gzip();
H
  cat > "$ui/ui.cpp" <<'C'
#include "ui.h"
static const unsigned char idx[] = "<html><body>stub ui</body></html>";
static const std::vector<llama_ui_asset> assets = { {"index.html", "text/html", "\"stub\"", idx, sizeof(idx)-1} };
const std::vector<llama_ui_asset> & llama_ui_get_assets() { return assets; }
const llama_ui_asset * llama_ui_find_asset(const std::string & name) { for (auto & a : assets) if (a.name == name) return &a; return nullptr; }
bool llama_ui_use_gzip() { return false; }
C
  printf 'add_library(llama-ui STATIC ui.cpp)\ntarget_include_directories(llama-ui PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})\nset_target_properties(llama-ui PROPERTIES POSITION_INDEPENDENT_CODE ON)\nadd_custom_target(llama-ui-assets)\n' > "$ui/CMakeLists.txt"
fi
cmake -S "$src" -B "$cache/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DGGML_RPC=ON >&2
cmake --build "$cache/build" -j"$(nproc)" --target "${targets[@]}" >&2
echo "$bin"
