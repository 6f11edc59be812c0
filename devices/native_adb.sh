#!/bin/sh
# edgenas native kit, host side: push the kit (and the benchmark tool) to an Android device with adb,
# run native_runner.sh there, and pull the raw logs back into this kit's logs/ folder.
#
#   sh native_adb.sh [--tool PATH] [--lib PATH]... [--serial SERIAL] [--remote DIR] [--taskset MASK]
#
#   --tool PATH    the tool binary for the device's ABI on this host (benchmark_model or
#                  onnxruntime_perf_test), pushed into the kit folder on the device. Without it the
#                  tool must already be there, or at $EDGENAS_TOOL_ON_DEVICE.
#   --lib PATH     a shared library the tool needs (e.g. libonnxruntime.so); repeatable
#   --serial S     the adb device (default: $ANDROID_SERIAL, else adb's only device)
#   --remote DIR   the kit folder on the device (default /data/local/tmp/edgenas-kit-<kit id>)
#   --taskset MASK pin the tool to these cores (e.g. f0)
#
# Reruns push only what adb finds changed and time only the models without a complete log. Then:
#   edgenas lut import-kit <this kit folder>
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/native.conf"
ADB=${ADB:-adb}
TOOL=""
LIBS=""
SERIAL=${ANDROID_SERIAL:-}
REMOTE=${EDGENAS_REMOTE_DIR:-/data/local/tmp/edgenas-kit-$KIT_ID}
TASKSET=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tool) TOOL=$2; shift 2 ;;
    --lib) LIBS="$LIBS $2"; shift 2 ;;
    --serial) SERIAL=$2; shift 2 ;;
    --remote) REMOTE=$2; shift 2 ;;
    --taskset) TASKSET=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "native_adb: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
adb_() {
  if [ -n "$SERIAL" ]; then "$ADB" -s "$SERIAL" "$@"; else "$ADB" "$@"; fi
}
command -v "$ADB" >/dev/null 2>&1 || { echo "native_adb: adb not found (set ADB=/path/to/adb)" >&2; exit 2; }
echo "pushing the kit to $REMOTE"
adb_ shell "mkdir -p '$REMOTE'"
adb_ push "$HERE/models" "$REMOTE/" >/dev/null
for f in native_runner.sh native.conf native_models.txt; do
  adb_ push "$HERE/$f" "$REMOTE/$f" >/dev/null
done
TOOL_ON_DEVICE=${EDGENAS_TOOL_ON_DEVICE:-}
if [ -n "$TOOL" ]; then
  adb_ push "$TOOL" "$REMOTE/$TOOL_NAME" >/dev/null
  adb_ shell "chmod 755 '$REMOTE/$TOOL_NAME'"
  TOOL_ON_DEVICE="$REMOTE/$TOOL_NAME"
fi
for lib in $LIBS; do
  adb_ push "$lib" "$REMOTE/" >/dev/null
done
status=0
adb_ shell "cd '$REMOTE' && EDGENAS_TOOL='$TOOL_ON_DEVICE' EDGENAS_TASKSET='$TASKSET' LD_LIBRARY_PATH='$REMOTE':\${LD_LIBRARY_PATH:-} sh native_runner.sh ." || status=$?
tmp=$(mktemp -d "${TMPDIR:-/tmp}/edgenas-logs.XXXXXX")
adb_ pull "$REMOTE/logs" "$tmp" >/dev/null
mkdir -p "$HERE/logs"
for f in "$tmp"/logs/*.log; do
  [ -f "$f" ] && cp -f "$f" "$HERE/logs/"
done
rm -rf "$tmp"
echo "raw logs in $HERE/logs; next: edgenas lut import-kit $HERE"
exit "$status"
