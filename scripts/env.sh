# shellcheck shell=bash
# Source this file (`source scripts/env.sh`) after running scripts/setup.sh.
# Works from any cwd, with bash or zsh.
if [ -n "${BASH_SOURCE:-}" ]; then
    _vs_env_file="${BASH_SOURCE[0]}"
elif [ -n "${ZSH_VERSION:-}" ]; then
    # shellcheck disable=SC2296
    _vs_env_file="${(%):-%x}"
else
    _vs_env_file="$0"
fi
VINOSERVE_ROOT="$(cd -- "$(dirname -- "$_vs_env_file")/.." && pwd)"
unset _vs_env_file
export VINOSERVE_ROOT
export OPENVINO_LIB_DIR="$VINOSERVE_ROOT/.deps/python/openvino/libs"
# Prepend (only once, so sourcing repeatedly does not grow the variables).
case ":${PYTHONPATH:-}:" in
    *":$VINOSERVE_ROOT/.deps/python:"*) ;;
    *) export PYTHONPATH="$VINOSERVE_ROOT/.deps/python${PYTHONPATH:+:$PYTHONPATH}" ;;
esac
case ":${LD_LIBRARY_PATH:-}:" in
    *":$OPENVINO_LIB_DIR:"*) ;;
    *) export LD_LIBRARY_PATH="$OPENVINO_LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
esac
