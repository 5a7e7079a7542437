#!/usr/bin/env bash
# Runs every test. Installs what the tests need when missing (Debian packages; needs root or sudo):
#   redis-server                         real Redis for the spill-store and end-to-end tests
#   python3-grpcio python3-grpc-tools    a stock gRPC client for the interop tests (under /usr/bin/python3)
#   python3-sentencepiece python3-regex  reference tokenizers (SentencePiece; GPT-2's byte-level BPE algorithm)
#   python3-jinja2                       reference chat-template rendering
#   nodejs npm curl                      the official openai npm client (npm ci into tests/KvCache.Gateway.Tests/Node
#                                        from its package-lock.json) and curl, against the OpenAI-compatible API
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
/usr/bin/python3 -c 'import grpc, grpc_tools' >/dev/null 2>&1 || missing+=(python3-grpcio python3-grpc-tools)
/usr/bin/python3 -c 'import sentencepiece' >/dev/null 2>&1 || missing+=(python3-sentencepiece)
/usr/bin/python3 -c 'import regex' >/dev/null 2>&1 || missing+=(python3-regex)
/usr/bin/python3 -c 'import jinja2' >/dev/null 2>&1 || missing+=(python3-jinja2)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  echo "Installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

node_tests=tests/KvCache.Gateway.Tests/Node
if [[ ! -d $node_tests/node_modules ]]; then
  echo "Installing the openai npm package (npm ci in $node_tests)"
  (cd "$node_tests" && npm ci --no-audit --no-fund >/dev/null)
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
dotnet test Cluster.sln -c Release "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# One closing line for the whole run, summed over the test projects.
awk '/(Passed|Failed)! +- +Failed: /{
       gsub(",", ""); for (i = 1; i <= NF; i++) { if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1); if ($i == "Skipped:") s += $(i+1) } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
