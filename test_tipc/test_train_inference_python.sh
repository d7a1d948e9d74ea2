#!/bin/bash
# TIPC basic chain for one model: train -> eval -> export -> inference, then numeric checks.
#
#   bash test_tipc/prepare.sh test_tipc/configs/ResNet/ResNet18_train_infer_python.txt lite_train_lite_infer
#   bash test_tipc/test_train_inference_python.sh test_tipc/configs/ResNet/ResNet18_train_infer_python.txt lite_train_lite_infer
#
# Run from the repository root. MODE: lite_train_lite_infer | lite_train_whole_infer | whole_infer
# | whole_train_whole_infer (see test_tipc/README.md). Every command is appended to
# test_tipc/output/<model_name>/results_python.log as PaddleClas writes it:
#     Run successfully with command - <model_name> - <command> - <its log> !
#     Run failed with command - <model_name> - <command> - <its log> !
# plus "Run skipped (<why>) with command - ..." for what cannot run here (GPU runs without a GPU,
# the steps after a failed one). Exit status: 0 all commands succeeded, 1 one failed, 2 usage error.
set -u

FILENAME=${1:-}
MODE=${2:-}
source test_tipc/common_func.sh

if [[ -z ${FILENAME} || -z ${MODE} || " ${TIPC_MODES} " != *" ${MODE} "* ]]; then
    echo "usage: bash test_tipc/test_train_inference_python.sh CONFIG MODE   (MODE: ${TIPC_MODES// / | })" >&2
    exit 2
fi
tipc_load "${FILENAME}" || exit 2

# ------------------------------------------------------------------ train_params
model_name=$(tipc_get train_params model_name)
python=$(tipc_get train_params python python)
gpu_list=$(tipc_get train_params gpu_list -1)
device_key="-o Global.device"
device_list=$(tipc_get train_params "${device_key}" cpu)
autocast_list=$(tipc_get train_params "-o Global.auto_cast" null)
epoch_key="-o Global.epochs"
epoch_num=$(tipc_value train_params "${epoch_key}" "${MODE}")
save_model_key="-o Global.output_dir"
train_batch_key="-o DataLoader.Train.sampler.batch_size"
train_batch_value=$(tipc_value train_params "${train_batch_key}" "${MODE}")
pretrain_model_key="-o Global.pretrained_model"
pretrain_model_value=$(tipc_value train_params "${pretrain_model_key}" "${MODE}")
train_model_name=$(tipc_get train_params train_model_name latest)
data_root=$(tipc_value train_params data_root "${MODE}")
train_extra=$(tipc_extra_flags train_params "${MODE}" Global.device Global.auto_cast Global.epochs Global.output_dir \
    DataLoader.Train.sampler.batch_size Global.pretrained_model)
trainer_list=$(tipc_get train_params trainer norm_train)

# ------------------------------------------------------------------ eval_params
eval_py=$(tipc_get eval_params eval)
eval_extra=$(tipc_extra_flags eval_params "${MODE}")

# ------------------------------------------------------------------ infer_params
save_infer_key="-o Global.save_inference_dir"
export_weight_key="-o Global.pretrained_model"
norm_export=$(tipc_get infer_params norm_export)
pretrained_model_url=$(tipc_value infer_params pretrained_model_url "${MODE}")
infer_model=$(tipc_value infer_params infer_model "${MODE}")
infer_export=$(tipc_get infer_params infer_export True)
build_gallery=$(tipc_get infer_params build_gallery)
inference_py=$(tipc_get infer_params inference)
use_gpu_list=$(tipc_get infer_params "-o Global.use_gpu" False)
use_mkldnn_list=$(tipc_get infer_params "-o Global.enable_mkldnn" True)
cpu_threads_list=$(tipc_get infer_params "-o Global.cpu_num_threads" 1)
batch_size_list=$(tipc_get infer_params "-o Global.batch_size" 1)
use_trt_list=$(tipc_get infer_params "-o Global.use_tensorrt" False)
precision_list=$(tipc_get infer_params "-o Global.use_fp16" False)
infer_model_key="-o Global.inference_model_dir"
if [[ $(tipc_get infer_params "-o Global.rec_inference_model_dir" absent) != absent ]]; then
    infer_model_key="-o Global.rec_inference_model_dir"
fi
infer_img_dir=$(tipc_value infer_params "-o Global.infer_imgs" "${MODE}")
save_results=$(tipc_value infer_params "-o Global.save_results" "${MODE}" True)
benchmark_value=$(tipc_value infer_params "-o Global.enable_benchmark" "${MODE}" False)
infer_extra=$(tipc_extra_flags infer_params "${MODE}" Global.save_inference_dir Global.pretrained_model Global.use_gpu \
    Global.enable_mkldnn Global.cpu_num_threads Global.batch_size Global.use_tensorrt Global.use_fp16 \
    Global.inference_model_dir Global.rec_inference_model_dir Global.infer_imgs Global.save_results \
    Global.enable_benchmark)

for unsupported in kl_quant infer_quant; do
    value=$(tipc_get infer_params "${unsupported}")
    if [[ ${value} != "null" && ${value} != "False" ]]; then
        echo "${FILENAME}: ${unsupported}:${value} is not supported by ppfreeze's TIPC (set it to null / False)" >&2
        exit 2
    fi
done
for required in model_name norm_export inference; do
    section=train_params
    [[ ${required} == eval ]] && section=eval_params
    [[ ${required} == norm_export || ${required} == inference ]] && section=infer_params
    if [[ $(tipc_get "${section}" "${required}") == "null" ]]; then
        echo "${FILENAME}: '${required}:' is missing from ${section}" >&2
        exit 2
    fi
done

OUTPUT_ROOT="./test_tipc/output"
LOG_PATH="${OUTPUT_ROOT}/${model_name}/${MODE}"
status_log="${OUTPUT_ROOT}/${model_name}/results_python.log"
rm -rf "${LOG_PATH}"
mkdir -p "${LOG_PATH}"
echo "===== $(date '+%Y-%m-%d %H:%M:%S') ${MODE} ${FILENAME} =====" | tee -a "${status_log}"

failures=0
commands=0
skipped=0

# run_step COMMAND LOG: run COMMAND with its output in LOG, log the PaddleClas status line.
function run_step() {
    local cmd=$1 log=$2 status
    commands=$((commands + 1))
    # a step that crashes natively can hang in its fatal-signal handler: a time limit ends it
    # (exit 124, logged as a failure) instead of the whole chain (TIPC_STEP_TIMEOUT seconds)
    timeout -k 10 "${TIPC_STEP_TIMEOUT:-1800}" bash -c "${cmd}" > "${log}" 2>&1 < /dev/null
    status=$?
    [[ ${status} -eq 124 ]] && echo "timed out after ${TIPC_STEP_TIMEOUT:-1800} s (TIPC_STEP_TIMEOUT)" >> "${log}"
    status_check "${status}" "${cmd}" "${status_log}" "${model_name}" "${log}"
    if [[ ${status} -ne 0 ]]; then
        failures=$((failures + 1))
        echo "----- last lines of ${log} -----" >&2
        tail -n 15 "${log}" >&2
    fi
    return "${status}"
}

function skip_step() {
    skipped=$((skipped + 1))
    status_skip "$1" "$2" "${status_log}" "${model_name}"
}

# data_flags CONFIG ROOT: set DATA_FLAGS to the -o overrides moving CONFIG's demo-data paths
# under ROOT (demo_data_overrides.py; cached per CONFIG and ROOT). Not for $(...): it sets globals.
declare -A DATA_FLAGS_CACHE=()
DATA_FLAGS=""
function data_flags() {
    local config=$1 root=$2
    DATA_FLAGS=""
    if [[ -z ${config} || ${root} == "null" ]]; then
        return
    fi
    if [[ ! -v "DATA_FLAGS_CACHE[${config}|${root}]" ]]; then
        DATA_FLAGS_CACHE["${config}|${root}"]=$(${python} test_tipc/demo_data_overrides.py "${config}" "${root}")
    fi
    DATA_FLAGS=${DATA_FLAGS_CACHE["${config}|${root}"]}
}

# func_inference MODEL_DIR GPU_LABEL EXPORT_ARGS: [build_gallery ->] every inference flag combination -> compare.
function func_inference() {
    local model_dir=$1 gpu=$2 export_args=$3
    local infer_root use_gpu use_mkldnn threads batch_size use_trt precision name cmd
    local index_flags="" gallery_args="" ran_any=0
    infer_root=$(tipc_demo_root "${infer_img_dir}")
    [[ -z ${infer_root} ]] && infer_root=null
    if [[ ${build_gallery} != "null" ]]; then
        local index_dir="${LOG_PATH}/index_gpus_${gpu}"
        data_flags "$(tipc_config_of "${build_gallery}")" "${infer_root}"
        gallery_args="$(tipc_script_args "${build_gallery}") ${DATA_FLAGS} ${infer_model_key}=${model_dir} -o IndexProcess.index_dir=${index_dir}"
        cmd="${python} ${build_gallery%% *} ${gallery_args}"
        if ! run_step "${cmd}" "${LOG_PATH}/build_gallery_gpus_${gpu}.log"; then
            skip_step "build_gallery failed" "${python} ${inference_py} ... (every inference run)"
            return
        fi
        index_flags="-o IndexProcess.index_dir=${index_dir}"
    fi
    rm -f "${LOG_PATH}"/python_infer_*_gpus_"${gpu}"_*.json
    while IFS= read -r use_gpu; do
        if [[ ${use_gpu} == "False" || ${use_gpu} == "cpu" ]]; then
            while IFS= read -r use_mkldnn; do
                while IFS= read -r threads; do
                    while IFS= read -r batch_size; do
                        name="python_infer_cpu_gpus_${gpu}_usemkldnn_${use_mkldnn}_threads_${threads}_batchsize_${batch_size}"
                        cmd="${python} ${inference_py} -o Global.use_gpu=${use_gpu} -o Global.enable_mkldnn=${use_mkldnn} $(tipc_flag "-o Global.cpu_num_threads" "${threads}") $(tipc_flag "-o Global.batch_size" "${batch_size}") ${infer_model_key}=${model_dir} $(tipc_flag "-o Global.infer_imgs" "${infer_img_dir}") ${index_flags} $(results_flag "${name}") $(tipc_flag "-o Global.enable_benchmark" "${benchmark_value}") ${infer_extra}"
                        run_step "${cmd}" "${LOG_PATH}/${name}.log"
                        ran_any=1
                    done < <(tipc_split "${batch_size_list}")
                done < <(tipc_split "${cpu_threads_list}")
            done < <(tipc_split "${use_mkldnn_list}")
        elif [[ ${use_gpu} == "True" || ${use_gpu} == "gpu" ]]; then
            while IFS= read -r use_trt; do
                while IFS= read -r precision; do
                    while IFS= read -r batch_size; do
                        name="python_infer_gpu_gpus_${gpu}_usetrt_${use_trt}_precision_${precision}_batchsize_${batch_size}"
                        cmd="${python} ${inference_py} -o Global.use_gpu=${use_gpu} -o Global.use_tensorrt=${use_trt} -o Global.use_fp16=${precision} $(tipc_flag "-o Global.batch_size" "${batch_size}") ${infer_model_key}=${model_dir} $(tipc_flag "-o Global.infer_imgs" "${infer_img_dir}") ${index_flags} $(results_flag "${name}") $(tipc_flag "-o Global.enable_benchmark" "${benchmark_value}") ${infer_extra}"
                        if tipc_has_gpu "${python}"; then
                            run_step "${cmd}" "${LOG_PATH}/${name}.log"
                            ran_any=1
                        else
                            skip_step "no GPU" "${cmd}"
                        fi
                    done < <(tipc_split "${batch_size_list}")
                done < <(tipc_split "${precision_list}")
            done < <(tipc_split "${use_trt_list}")
        else
            echo "-o Global.use_gpu: ${use_gpu} is neither True nor False" >&2
            failures=$((failures + 1))
        fi
    done < <(tipc_split "${use_gpu_list}")
    if [[ ${ran_any} == 1 && ${save_results} == "True" ]]; then
        cmd="${python} test_tipc/compare_results.py infer ${export_args} --results '${LOG_PATH}/python_infer_*_gpus_${gpu}_*.json'"
        [[ -n ${gallery_args} ]] && cmd="${cmd} --gallery='${gallery_args}'"
        run_step "${cmd}" "${LOG_PATH}/compare_infer_gpus_${gpu}.log"
    fi
}

# results_flag NAME: -o Global.save_results=<LOG_PATH>/NAME.json when the config asks for results.
function results_flag() {
    if [[ ${save_results} == "True" ]]; then
        echo "-o Global.save_results=${LOG_PATH}/$1.json"
    fi
}

# export_and_infer WEIGHTS SAVE_DIR GPU_LABEL: export WEIGHTS to SAVE_DIR/inference, then func_inference.
function export_and_infer() {
    local weights=$1 save_dir=$2 gpu=$3
    local export_config export_args cmd
    data_flags "$(tipc_config_of "${norm_export}")" "${data_root}"
    export_args="$(tipc_script_args "${norm_export}") ${DATA_FLAGS} ${export_weight_key}=${weights} ${save_infer_key}=${save_dir}/inference"
    cmd="${python} ${norm_export%% *} ${export_args}"
    if ! run_step "${cmd}" "${save_dir}_export.log"; then
        skip_step "export failed" "${python} ${inference_py} ... (every inference run and the comparison)"
        return
    fi
    func_inference "${save_dir}/inference" "${gpu}" "${export_args}"
}

# ------------------------------------------------------------------ whole_infer: no training
if [[ ${MODE} == "whole_infer" ]]; then
    gpu="-1"
    save_dir="${LOG_PATH}/whole_infer_gpus_${gpu}"
    if [[ ${pretrained_model_url} == "null" ]]; then
        echo "${FILENAME}: whole_infer needs pretrained_model_url: (the weights to export; prepare.sh makes them)" >&2
        exit 2
    fi
    if [[ ${eval_py} != "null" ]]; then
        data_flags "$(tipc_config_of "${eval_py}")" "${data_root}"
        cmd="${python} ${eval_py} ${pretrain_model_key}=${pretrained_model_url} ${device_key}=cpu ${eval_extra} ${DATA_FLAGS}"
        run_step "${cmd}" "${save_dir}_eval.log"
    fi
    if [[ ${infer_export} == "True" ]]; then
        export_and_infer "${pretrained_model_url}" "${save_dir}" "${gpu}"
    else
        data_flags "$(tipc_config_of "${norm_export}")" "${data_root}"
        func_inference "${infer_model}" "${gpu}" "$(tipc_script_args "${norm_export}") ${DATA_FLAGS} ${export_weight_key}=${pretrained_model_url}"
    fi
else
    # -------------------------------------------------------------- modes that train
    mapfile -t gpus < <(tipc_split "${gpu_list}")
    mapfile -t devices < <(tipc_split "${device_list}")
    if [[ ${#gpus[@]} -ne ${#devices[@]} ]]; then
        echo "${FILENAME}: gpu_list has ${#gpus[@]} entries but ${device_key} has ${#devices[@]}; pair them" >&2
        exit 2
    fi
    for index in "${!gpus[@]}"; do
        gpu=${gpus[${index}]}
        device=${devices[${index}]}
        while IFS= read -r autocast; do
            while IFS= read -r trainer; do
                run_train=$(tipc_get train_params "${trainer}")
                [[ ${run_train} == "null" ]] && continue
                save_log="${LOG_PATH}/${trainer}_gpus_${gpu}_autocast_${autocast}"
                data_flags "$(tipc_config_of "${run_train}")" "${data_root}"
                set_autocast=""
                case ${autocast} in
                    amp) set_autocast="-o AMP.level=O1 -o AMP.scale_loss=128 -o AMP.use_dynamic_loss_scaling=True" ;;
                    fp16) set_autocast="-o AMP.level=O2 -o AMP.scale_loss=128 -o AMP.use_dynamic_loss_scaling=True" ;;
                esac
                train_args="$(tipc_script_args "${run_train}") ${device_key}=${device} ${save_model_key}=${save_log} $(tipc_flag "${epoch_key}" "${epoch_num}") $(tipc_flag "${pretrain_model_key}" "${pretrain_model_value}") ${set_autocast} $(tipc_flag "${train_batch_key}" "${train_batch_value}") ${train_extra} ${DATA_FLAGS}"
                if [[ ${gpu} == *,* ]]; then
                    cmd="${python} -m paddle.distributed.launch --devices=${gpu} ${run_train%% *} ${train_args}"
                else
                    cmd="${python} ${run_train%% *} ${train_args}"
                fi
                if [[ ${device} == gpu* ]] && ! tipc_has_gpu "${python}"; then
                    skip_step "no GPU" "${cmd} (and its eval, export, inference)"
                    continue
                fi
                if [[ ${gpu} != "-1" && ${gpu} != *,* ]]; then
                    export CUDA_VISIBLE_DEVICES=${gpu}
                fi
                weights_file=""
                if run_step "${cmd}" "${save_log}.log"; then
                    weights_file=$(ls "${save_log}"/*/"${train_model_name}".pdparams 2> /dev/null | head -n 1)
                    if [[ -z ${weights_file} ]]; then
                        failures=$((failures + 1))
                        echo " Run failed with command - ${model_name} - ${cmd} - ${save_log}.log ! (no ${train_model_name}.pdparams under ${save_log})" | tee -a "${status_log}"
                    fi
                fi
                if [[ -n ${weights_file} ]]; then
                    weights=${weights_file%.pdparams}
                    if [[ ${pretrain_model_value} != "null" ]]; then
                        cmd="${python} test_tipc/compare_results.py frozen --train-dir $(dirname "${weights_file}")"
                        run_step "${cmd}" "${save_log}_frozen.log"
                    fi
                    if [[ ${eval_py} != "null" ]]; then
                        data_flags "$(tipc_config_of "${eval_py}")" "${data_root}"
                        cmd="${python} ${eval_py} ${pretrain_model_key}=${weights} ${device_key}=${device} ${eval_extra} ${DATA_FLAGS}"
                        run_step "${cmd}" "${save_log}_eval.log"
                    fi
                    export_and_infer "${weights}" "${save_log}" "${gpu}"
                else
                    skip_step "training failed" "eval, export and inference of ${save_log}"
                fi
                unset CUDA_VISIBLE_DEVICES
            done < <(tipc_split "${trainer_list}")
        done < <(tipc_split "${autocast_list}")
    done
fi

summary="${model_name} ${MODE}: ${commands} commands, $((commands - failures)) succeeded, ${failures} failed, ${skipped} skipped"
echo "===== ${summary} =====" | tee -a "${status_log}"
if [[ ${failures} -gt 0 ]]; then
    exit 1
fi
exit 0
