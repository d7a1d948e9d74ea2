#!/bin/bash
# Prepare what test_train_inference_python.sh needs for CONFIG in MODE, offline (nothing is downloaded):
#
#   bash test_tipc/prepare.sh test_tipc/configs/ResNet/ResNet18_train_infer_python.txt lite_train_lite_infer
#
# - the demo data, drawn by tools/make_demo_data.py: the lite set (4 train / 2 val images per class)
#   in ./dataset/tipc_lite/ppfreeze_demo for lite_train_*, the whole set (60 / 20, the quick start's
#   ./dataset/ppfreeze_demo, reused when it is already there) for *_whole_infer and whole_train_*;
# - the "pretrained" files the config names (PaddleClas downloads them): `-o Global.pretrained_model:`
#   of train_params for the modes that train, `pretrained_model_url:` of infer_params for whole_infer,
#   written by test_tipc/make_pretrained.py from the train / export command's config.
# Run from the repository root. Exit status: 0 ready, 1 a step failed, 2 usage error.
set -u

FILENAME=${1:-}
MODE=${2:-}
source test_tipc/common_func.sh

if [[ -z ${FILENAME} || -z ${MODE} || " ${TIPC_MODES} " != *" ${MODE} "* ]]; then
    echo "usage: bash test_tipc/prepare.sh CONFIG MODE   (MODE: ${TIPC_MODES// / | })" >&2
    exit 2
fi
tipc_load "${FILENAME}" || exit 2
python=$(tipc_get train_params python python)
model_name=$(tipc_get train_params model_name)

# make_demo ROOT [SIZE FLAGS]: generate (or reuse) the demo data at ROOT.
function make_demo() {
    local root=$1
    shift
    echo "prepare: demo data in ${root}"
    if ! ${python} tools/make_demo_data.py --root "${root}" "$@" > /dev/null; then
        echo "prepare: tools/make_demo_data.py failed for ${root}" >&2
        return 1
    fi
}

# make_weights COMMAND OUTPUT: seeded weights for COMMAND's model (its -c and -o) at OUTPUT.pdparams.
function make_weights() {
    local command=$1 output=$2
    echo "prepare: pretrained file ${output}.pdparams"
    # shellcheck disable=SC2046  # the command's arguments are split on purpose
    eval "${python} test_tipc/make_pretrained.py $(tipc_script_args "${command}") --output ${output}"
}

status=0
case ${MODE} in
    lite_train_lite_infer)
        make_demo "${TIPC_LITE_ROOT}" ${TIPC_LITE_SIZES} || status=1 ;;
    lite_train_whole_infer)
        make_demo "${TIPC_LITE_ROOT}" ${TIPC_LITE_SIZES} || status=1
        make_demo "${TIPC_WHOLE_ROOT}" || status=1 ;;
    whole_infer | whole_train_whole_infer)
        make_demo "${TIPC_WHOLE_ROOT}" || status=1 ;;
esac

if [[ ${MODE} == "whole_infer" ]]; then
    weights=$(tipc_value infer_params pretrained_model_url "${MODE}")
    if [[ ${weights} != "null" ]]; then
        make_weights "$(tipc_get infer_params norm_export)" "${weights}" || status=1
    fi
else
    weights=$(tipc_value train_params "-o Global.pretrained_model" "${MODE}")
    if [[ ${weights} != "null" ]]; then
        make_weights "$(tipc_get train_params "$(tipc_split "$(tipc_get train_params trainer norm_train)" | head -n 1)")" \
            "${weights}" || status=1
    fi
fi

if [[ ${status} -ne 0 ]]; then
    echo "prepare: ${model_name} ${MODE}: FAILED" >&2
else
    echo "prepare: ${model_name} ${MODE}: ready"
fi
exit "${status}"
