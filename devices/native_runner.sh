#!/bin/sh
# edgenas native kit runner (device side). Times every model of an edgenas kit with the runtime's own
# benchmark tool -- LiteRT's benchmark_model or ONNX Runtime's onnxruntime_perf_test -- using the
# arguments in native.conf (the device spec's threads and delegate / execution provider), and keeps
# each tool's raw log in logs/. Back on the host: edgenas lut import-kit KIT_DIR
#
#   sh native_runner.sh [KIT_DIR]
#
# Environment:
#   EDGENAS_TOOL     the tool binary (default: ./<tool> in the kit folder, else <tool> on PATH)
#   EDGENAS_TASKSET  a CPU mask for taskset, e.g. f0 (the big cores of many phones); default: none
#
# A rerun skips models whose log is complete, so an interrupted run resumes. POSIX sh only (Android's
# mksh/toybox, busybox ash, dash); no Python, no bash.
set -u
KIT_DIR=${1:-$(dirname "$0")}
cd "$KIT_DIR" || { echo "native_runner: cannot enter $KIT_DIR" >&2; exit 2; }
if [ ! -f native.conf ] || [ ! -f native_models.txt ]; then
  echo "native_runner: $KIT_DIR is not a native edgenas kit (native.conf / native_models.txt missing)" >&2
  exit 2
fi
. ./native.conf
TOOL=${EDGENAS_TOOL:-}
if [ -z "$TOOL" ]; then
  if [ -x "./$TOOL_NAME" ]; then TOOL="./$TOOL_NAME"; else TOOL="$TOOL_NAME"; fi
fi
if [ ! -x "$TOOL" ] && ! command -v "$TOOL" >/dev/null 2>&1; then
  echo "native_runner: $TOOL not found; put the $TOOL_NAME binary next to this script or set EDGENAS_TOOL" >&2
  exit 2
fi
ARGS_TAG=$(echo "$TOOL_ARGS" | tr ' ' ',')
mkdir -p logs
set -f  # the tool arguments are split on spaces, never globbed
total=$(grep -c . native_models.txt)
i=0
ran=0
skipped=0
failed=0
while read -r model log; do
  [ -n "$model" ] || continue
  i=$((i + 1))
  if [ -f "$log" ] && [ "$(tail -n 1 "$log")" = "# edgenas-native-kit exit=0" ]; then
    skipped=$((skipped + 1))
    continue
  fi
  echo "[$i/$total] $model" >&2
  part="$log.part"
  {
    echo "# edgenas-native-kit kit=$KIT_ID model=$model tool=$TOOL_NAME args=$ARGS_TAG"
    echo "# command: $TOOL $TOOL_ARGS $MODEL_PREFIX$model"
    echo "# started: $(date -u '+%Y-%m-%dT%H:%M:%SZ' 2>/dev/null)"
    if [ -n "${EDGENAS_TASKSET:-}" ]; then
      taskset "$EDGENAS_TASKSET" "$TOOL" $TOOL_ARGS "$MODEL_PREFIX$model" </dev/null 2>&1
    else
      "$TOOL" $TOOL_ARGS "$MODEL_PREFIX$model" </dev/null 2>&1
    fi
    echo "# edgenas-native-kit exit=$?"
  } >"$part" 2>&1
  mv -f "$part" "$log"
  ran=$((ran + 1))
  if [ "$(tail -n 1 "$log")" != "# edgenas-native-kit exit=0" ]; then
    failed=$((failed + 1))
    echo "native_runner: $TOOL_NAME failed on $model; see $KIT_DIR/$log" >&2
  fi
done <native_models.txt
echo "timed $ran model(s) ($skipped already done, $failed failed); raw logs in $KIT_DIR/logs"
[ "$failed" -eq 0 ]
