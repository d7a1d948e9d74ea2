"""Run ppfreeze's deploy tools on PaddleClas's own deploy configs (a local PaddleClas checkout).

For every ``deploy/configs/**/*.yaml`` of PaddleClas, unchanged apart from paths (model
directories, images, the gallery, ``SavePreLabel.save_dir``, a stand-in for a label map missing
from the checkout) and ``Global.use_gpu: false`` (the device), this runs the ppfreeze tool that config is for, in PaddleClas's ``deploy`` directory
(so its relative label-map paths resolve as they do for PaddleClas):

- ``PreProcess`` (classification, PULC, attributes): ``deploy/python/predict_cls.py``;
- ``IndexProcess`` (``inference_general.yaml`` and the other recognition configs):
  ``deploy/python/build_gallery.py`` then ``deploy/python/predict_rec.py``;
- ``RecPreProcess`` without ``IndexProcess`` (``inference_rec.yaml``): ``predict_rec.py``
  (feature extraction).

The models are random-weight ResNet18s exported here with the output width each post-process
needs (the label map's class count) and the input channels the preprocessing gives. It reports per config and tool: ``pass``, ``refused`` (a clear configuration error: a
feature ppfreeze does not have, e.g. the main-body detector alone), or ``FAIL`` (anything else).

    python tools/dev/run_paddleclas_deploy_configs.py --paddleclas /work/pc
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

# output width of the exported classifier per post-process (PaddleClas's PULC / attribute models)
OUTPUTS = {"PersonAttribute": 26, "VehicleAttribute": 19, "TableAttribute": 6, "ThreshOutput": 2,
           "ScoreOutput": 1, "MultiLabelThreshOutput": 33, "Topk": 1000}
OPS = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 64}},
       {"NormalizeImage": {"scale": "1.0/255.0", "order": ""}}, {"ToCHWImage": None}]


def export(work: str, name: str, arch: dict, channels: int = 3) -> str:
    """A random-weight model exported to ``<work>/models/<name>`` (cached)."""
    import paddle

    from ppfreeze.arch import build_model
    from ppfreeze.config import load_config
    from ppfreeze.export import export_model
    target = os.path.join(work, "models", name)
    if os.path.isdir(target):
        return target
    paddle.seed(0)
    weights = os.path.join(work, "models", name + "_weights")
    os.makedirs(os.path.dirname(weights), exist_ok=True)
    paddle.save(build_model(arch).state_dict(), weights + ".pdparams")
    cfg = {"Global": {"pretrained_model": weights, "device": "cpu", "image_shape": [channels, 64, 64],
                      "output_dir": os.path.join(work, "out")},
           "Arch": arch, "Infer": {"infer_imgs": work, "batch_size": 1,
                                   "transforms": OPS[:2] + [{"NormalizeImage": {"scale": "1.0/255.0", "order": "",
                                                                                "channel_num": channels}}, OPS[3]]}}
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    export_model(load_config(path), target)
    return target


def classifier(work: str, width: int, channels: int = 3) -> str:
    return export(work, f"cls_{width}_c{channels}", {"name": "ResNet18", "class_num": width,
                                                     "input_image_channel": channels}, channels)


def label_map(post: dict, deploy: str, work: str) -> tuple:
    """(number of classes of the post-process's label map or its usual output width, a path override or None).

    A label map missing from the checkout (``inference_cls_based_action.yaml`` names a dataset
    file) is replaced by a stand-in with two classes: the path is the only change."""
    name = post.get("main_indicator", "Topk")
    args = post.get(name) or {}
    path = args.get("class_id_map_file")
    if not path:
        return OUTPUTS.get(name, 1000), None
    full = os.path.join(deploy, path)
    if os.path.isfile(full):
        with open(full, encoding="utf-8") as f:
            return sum(1 for line in f if line.strip()), None
    stand_in = os.path.join(work, "stand_in_labels.txt")
    with open(stand_in, "w") as f:
        f.write("0 class_a\n1 class_b\n")
    return 2, f"PostProcess.{name}.class_id_map_file={stand_in}"


def recognizer(work: str, dim: int) -> str:
    return export(work, f"rec_{dim}", {"name": "RecModel", "infer_output_key": "features",
                                       "Backbone": {"name": "ResNet18"}, "BackboneStopLayer": {"name": "flatten"},
                                       "Neck": {"name": "FC", "embedding_size": 512, "class_num": dim}})


def images(work: str, delimiter: str = "\t") -> tuple:
    """(a folder of query images, a gallery list ``path<delimiter>label``, the gallery root)."""
    from make_demo_data import make_demo_dataset
    root = os.path.join(work, "demo")
    if not os.path.isdir(root):
        make_demo_dataset(root, train_per_class=1, val_per_class=1)
    query = os.path.join(root, "images", "val", os.listdir(os.path.join(root, "images", "val"))[0])
    gallery = os.path.join(work, f"gallery_{ord(delimiter[0])}.txt")
    with open(os.path.join(root, "train_list.txt")) as f:
        lines = [line.split() for line in f if line.strip()][:6]
    with open(gallery, "w") as f:
        f.write("".join(f"{path}{delimiter}{label}\n" for path, label in lines))
    return query, gallery, root


def run_tool(tool: str, config: str, overrides: list, cwd: str, log: str) -> tuple:
    cmd = [sys.executable, os.path.join(ROOT, "deploy", "python", f"{tool}.py"), "-c", config]
    for item in overrides:
        cmd += ["-o", item]
    with open(log, "w") as f:
        code = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}).returncode
    with open(log) as f:
        text = f.read()
    errors = [line for line in text.splitlines() if line.startswith("ppfreeze: ")]
    warnings = sorted({line.split("WARNING: ", 1)[1] for line in text.splitlines() if "WARNING: " in line})
    if code == 0:
        return "pass", "; ".join(warnings)
    if code == 2 and errors:
        return "refused", errors[-1]
    return "FAIL", (errors[-1] if errors else text.strip().splitlines()[-1] if text.strip() else f"exit {code}")


def jobs(cfg: dict, work: str, deploy: str) -> list:
    """(tool, overrides) to run for one PaddleClas deploy config."""
    query, gallery, root = images(work, str((cfg.get("IndexProcess") or {}).get("delimiter", "\t")))
    glob_ = ["Global.use_gpu=false"]
    if "PreProcess" in cfg:
        post = cfg.get("PostProcess") or {}
        width, map_override = label_map(post, deploy, work)
        channels = max([(op.get("NormalizeImage") or {}).get("channel_num", 3) for op in cfg["PreProcess"]["transform_ops"]
                        if isinstance(op, dict)] or [3])
        extra = [f"PostProcess.SavePreLabel.save_dir={work}/pre_label"] if "SavePreLabel" in post else []
        extra += [map_override] if map_override else []
        return [("predict_cls", glob_ + [f"Global.infer_imgs={query}",
                                         f"Global.inference_model_dir={classifier(work, width, channels)}"] + extra)]
    if "RecPreProcess" in cfg:
        index = cfg.get("IndexProcess") or {}
        model = recognizer(work, int(index.get("embedding_size", 512)))
        rec = glob_ + [f"Global.rec_inference_model_dir={model}", f"Global.infer_imgs={query}"]
        if not index:
            return [("predict_rec", rec)]
        index_dir = os.path.join(work, "index", str(len(os.listdir(os.path.join(work, "index")))
                                                    if os.path.isdir(os.path.join(work, "index")) else "0"))
        where = "index_path" if "index_path" in index else "index_dir"   # PaddleClas 2.2's name, or today's
        return [("build_gallery", glob_ + [f"Global.rec_inference_model_dir={model}", f"IndexProcess.image_root={root}",
                                           f"IndexProcess.data_file={gallery}", f"IndexProcess.{where}={index_dir}"]),
                ("predict_rec", rec + [f"IndexProcess.{where}={index_dir}"])]
    return [("predict_rec", glob_ + [f"Global.infer_imgs={query}"])]   # detector only: expect a refusal


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paddleclas", required=True, help="path of a PaddleClas checkout")
    p.add_argument("--work", default=None, help="working directory (default: a new temporary one)")
    p.add_argument("--configs", nargs="*", default=None,
                   help="these PaddleClas deploy yaml files instead (e.g. build_*.yaml of other PaddleClas versions)")
    args = p.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="pc_deploy_")
    deploy = os.path.join(os.path.abspath(args.paddleclas), "deploy")
    configs = [os.path.abspath(c) for c in args.configs] if args.configs else \
        sorted(glob.glob(os.path.join(deploy, "configs", "**", "*.yaml"), recursive=True))
    counts = {"pass": 0, "refused": 0, "FAIL": 0}
    logs = os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    for path in configs:
        with open(path) as f:
            cfg = yaml.safe_load(f)
        rel = os.path.relpath(path, deploy) if path.startswith(deploy) else path
        for tool, overrides in jobs(cfg, work, deploy):
            log = os.path.join(logs, rel.strip("/").replace("/", "_") + f".{tool}.log")
            verdict, detail = run_tool(tool, path, overrides, deploy, log)
            counts[verdict] += 1
            print(f"{verdict:8s} {rel:70s} {tool:14s} {detail[:300]}", flush=True)
    print(f"\n{counts['pass']} pass, {counts['refused']} refused with a configuration error, {counts['FAIL']} FAIL "
          f"({len(configs)} configs); logs in {logs}")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
