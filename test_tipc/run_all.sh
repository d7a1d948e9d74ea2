#!/usr/bin/env bash
# Run the chain for every config (or those matching a pattern) in one MODE and write a pass/fail table.
#
#   bash test_tipc/run_all.sh [MODE] [PATTERN]
#   bash test_tipc/run_all.sh lite_train_lite_infer            # every config
#   bash test_tipc/run_all.sh lite_train_lite_infer 'ResNet*'  # configs/<Family> matching the glob
#
# After each config its checkpoints and inference model are deleted (the logs stay), so a run over
# every family needs little disk. The table goes to test_tipc/output/summary_<MODE>.md; the exit
# status is the number of failed configs (capped at 125).
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-lite_train_lite_infer}
PATTERN=${2:-*}
SUMMARY=test_tipc/output/summary_${MODE}.md
mkdir -p test_tipc/output
{
    echo "| config | result | seconds | log |"
    echo "|---|---|---:|---|"
} > "$SUMMARY"
failed=0
total=0
for config in test_tipc/configs/${PATTERN}/*_train_infer_python.txt; do
    [ -f "$config" ] || continue
    total=$((total + 1))
    name=$(basename "$config" _train_infer_python.txt)
    log=test_tipc/output/run_${name}_${MODE}.log
    start=$(date +%s)
    if bash test_tipc/prepare.sh "$config" "$MODE" > "$log" 2>&1 &&
       bash test_tipc/test_train_inference_python.sh "$config" "$MODE" >> "$log" 2>&1; then
        result=pass
    else
        result=FAIL
        failed=$((failed + 1))
    fi
    seconds=$(( $(date +%s) - start ))
    echo "| \`${config#test_tipc/configs/}\` | $result | $seconds | \`$log\` |" >> "$SUMMARY"
    echo "[$total] $result ${seconds}s $config"
    # keep the logs, drop the weights: checkpoints and inference models of every family add up
    model_dir=$(sed -n 's/^model_name://p' "$config" | head -1)
    if [ -n "$model_dir" ] && [ -d "test_tipc/output/$model_dir/$MODE" ]; then
        find "test_tipc/output/$model_dir/$MODE" -type f \
            \( -name '*.pdparams' -o -name '*.pdopt' -o -name '*.pdiparams' -o -name '*.pdema' -o -name '*.json' \) -delete
    fi
done
echo "$((total - failed)) of $total configs passed in $MODE; table: $SUMMARY"
exit $(( failed > 125 ? 125 : failed ))
