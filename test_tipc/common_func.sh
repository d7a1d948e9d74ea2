#!/bin/bash
# Shared functions of test_tipc/prepare.sh and test_tipc/test_train_inference_python.sh.
# Sourced, never run. Works under `set -u` (bash >= 4.2: associative arrays, declare -g).
#
# A TIPC config (test_tipc/configs/<Family>/<Model>_train_infer_python.txt) is read by section
# and key, not by line number: `===...===train_params===...===` starts a section, every other
# line is `key:value` (split at the first colon), `##` separates groups, and `null:null` lines
# are placeholders. A value may depend on the mode:
#     -o Global.epochs:lite_train_lite_infer=1|whole_train_whole_infer=12
# and a list of values (one run per value) is separated by `|`:
#     -o Global.batch_size:1|6

TIPC_MODES="lite_train_lite_infer lite_train_whole_infer whole_infer whole_train_whole_infer"
# Where prepare.sh puts the demo data (tools/make_demo_data.py, no download).
TIPC_LITE_ROOT="./dataset/tipc_lite/ppfreeze_demo"
TIPC_WHOLE_ROOT="./dataset/ppfreeze_demo"
TIPC_LITE_SIZES="--train-per-class 4 --val-per-class 2"

declare -gA TIPC_CFG=()
declare -ga TIPC_ORDER=()

# tipc_load FILE: read FILE into TIPC_CFG["section/key"]=value, keys in file order in TIPC_ORDER.
function tipc_load() {
    local file=$1 section="" line key value
    if [[ ! -f ${file} ]]; then
        echo "TIPC config not found: ${file}" >&2
        return 2
    fi
    TIPC_CFG=()
    TIPC_ORDER=()
    while IFS= read -r line || [[ -n ${line} ]]; do
        line=${line%$'\r'}
        if [[ ${line} =~ ^=+([A-Za-z_]+)=+[[:space:]]*$ ]]; then
            section=${BASH_REMATCH[1]}
            continue
        fi
        [[ -z ${line// /} || ${line} == "##" || ${line} != *:* ]] && continue
        key=${line%%:*}
        value=${line#*:}
        [[ ${key} == "null" ]] && continue
        if [[ -v "TIPC_CFG[${section}/${key}]" ]]; then
            echo "${file}: key '${key}' appears twice in section ${section}" >&2
            return 2
        fi
        TIPC_CFG["${section}/${key}"]=${value}
        TIPC_ORDER+=("${section}/${key}")
    done < "${file}"
}

# tipc_get SECTION KEY [DEFAULT]: the raw value (DEFAULT, or null, when the key is absent).
function tipc_get() {
    local id="$1/$2"
    if [[ -v "TIPC_CFG[${id}]" ]]; then
        echo "${TIPC_CFG[${id}]}"
    else
        echo "${3:-null}"
    fi
}

# tipc_mode_value VALUE MODE: the value for MODE of `mode=value|mode=value` (null when MODE is
# not listed); any other VALUE is returned as it is.
function tipc_mode_value() {
    local value=$1 mode=$2 item
    local first=${value%%=*}
    if [[ ${value} != *=* || " ${TIPC_MODES} " != *" ${first} "* ]]; then
        echo "${value}"
        return
    fi
    local -a items
    IFS='|' read -r -a items <<< "${value}"
    for item in "${items[@]}"; do
        if [[ ${item%%=*} == "${mode}" ]]; then
            echo "${item#*=}"
            return
        fi
    done
    echo "null"
}

# tipc_value SECTION KEY MODE [DEFAULT]: tipc_get resolved for MODE.
function tipc_value() {
    tipc_mode_value "$(tipc_get "$1" "$2" "${4:-null}")" "$3"
}

# tipc_flag KEY VALUE: "KEY=VALUE" (e.g. "-o Global.epochs=2"), or nothing when KEY or VALUE is null/empty.
function tipc_flag() {
    local key=$1 value=$2
    if [[ ${key} == "null" || -z ${value// /} || ${value} == "null" ]]; then
        return
    fi
    echo "${key}=${value}"
}

# tipc_extra_flags SECTION MODE KNOWN...: the `-o key:value` lines of SECTION that are not in
# KNOWN, as flags for MODE (null values dropped), in file order.
function tipc_extra_flags() {
    local section=$1 mode=$2 id key flags=""
    shift 2
    local known=" $* "
    for id in "${TIPC_ORDER[@]}"; do
        [[ ${id%%/*} == "${section}" ]] || continue
        key=${id#*/}
        [[ ${key} == "-o "* && ${known} != *" ${key#-o } "* ]] || continue
        flags="${flags} $(tipc_flag "${key}" "$(tipc_mode_value "${TIPC_CFG[${id}]}" "${mode}")")"
    done
    echo "${flags}"
}

# tipc_split LIST: print the `|`-separated items of LIST, one per line.
function tipc_split() {
    local -a items
    IFS='|' read -r -a items <<< "$1"
    printf '%s\n' "${items[@]}"
}

# tipc_script_args COMMAND: COMMAND without its first word (the script), e.g. "-c x.yaml -o a=1".
function tipc_script_args() {
    local cmd=$1
    cmd=${cmd#"${cmd%%[![:space:]]*}"}
    [[ ${cmd} == *" "* ]] && echo "${cmd#* }"
}

# tipc_config_of COMMAND: the path after -c in COMMAND.
function tipc_config_of() {
    if [[ $1 =~ (^|[[:space:]])-c[[:space:]]+([^[:space:]]+) ]]; then
        echo "${BASH_REMATCH[2]}"
    fi
}

# tipc_demo_root PATH: the enclosing ppfreeze_demo directory of PATH (nothing if none).
function tipc_demo_root() {
    if [[ $1 =~ ^(.*/ppfreeze_demo)(/|$) ]]; then
        echo "${BASH_REMATCH[1]}"
    fi
}

# tipc_has_gpu: success when paddle is built with CUDA and sees a GPU (checked once, cheaply first).
function tipc_has_gpu() {
    if [[ -z ${TIPC_HAS_GPU:-} ]]; then
        TIPC_HAS_GPU=0
        if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L 2> /dev/null | grep -q GPU; then
            if ${1:-python} -c "import paddle, sys; sys.exit(0 if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else 1)" > /dev/null 2>&1; then
                TIPC_HAS_GPU=1
            fi
        fi
    fi
    [[ ${TIPC_HAS_GPU} == 1 ]]
}

# status_check STATUS COMMAND STATUS_LOG MODEL_NAME STEP_LOG: PaddleClas's result line.
function status_check() {
    local last_status=$1 run_command=$2 run_log=$3 model_name=$4 log_path=$5
    if [[ ${last_status} -eq 0 ]]; then
        echo " Run successfully with command - ${model_name} - ${run_command} - ${log_path} !" | tee -a "${run_log}"
    else
        echo " Run failed with command - ${model_name} - ${run_command} - ${log_path} !" | tee -a "${run_log}"
    fi
}

# status_skip REASON COMMAND STATUS_LOG MODEL_NAME: a command that was not run, and why.
function status_skip() {
    echo " Run skipped (${1}) with command - ${4} - ${2} !" | tee -a "${3}"
}
