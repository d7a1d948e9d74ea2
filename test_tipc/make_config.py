"""Write a TIPC config for a classification model of the zoo, from the PPLCNet_x0_25 one.

    python test_tipc/make_config.py ViT_small_patch16_224            # -> test_tipc/configs/VisionTransformer/...
    python test_tipc/make_config.py --all-families                    # the smallest model of every family

Models with a fixed input size (position embeddings: ViT, DeiT; fixed classifiers: VGG,
AlexNet, GoogLeNet) or a minimum one (InceptionV3) get their image size through the same
``-o`` overrides of the quick-start config's transform ops, in every command of the file.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
TEMPLATE = os.path.join(ROOT, "test_tipc", "configs", "PPLCNet", "PPLCNet_x0_25_train_infer_python.txt")
QUICK_START = "configs/quick_start/ResNet18.yaml"
# backbone module -> the configs/ folder name (PaddleClas-style family names)
FAMILY_DIRS = {"alexnet": "AlexNet", "convnext": "ConvNeXt", "deit": "DeiT", "densenet": "DenseNet", "dla": "DLA",
               "dpn": "DPN", "efficientnet": "EfficientNet", "esnet": "ESNet", "foundation_vit": "FoundationViT",
               "ghostnet": "GhostNet", "googlenet": "GoogLeNet", "hrnet": "HRNet", "inception_v3": "Inception",
               "inception_v4": "Inception", "mobilenet_v1": "MobileNetV1", "mobilenet_v2": "MobileNetV2",
               "mobilenet_v3": "MobileNetV3", "mobilenet_v4": "MobileNetV4", "pphgnet": "PPHGNet",
               "pphgnet_v2": "PPHGNetV2", "pplcnet": "PPLCNet", "pplcnet_v2": "PPLCNetV2", "regnet": "RegNet",
               "repvgg": "RepVGG", "res2net": "Res2Net", "resnest": "ResNeSt", "resnet": "ResNet",
               "resnet_variant": "ResNet", "resnet_vc": "ResNet", "resnext": "ResNeXt", "resnext101_wsl": "ResNeXt",
               "se_resnet_vd": "SENet", "se_resnext": "SENet", "shufflenet_v2": "ShuffleNet",
               "squeezenet": "SqueezeNet", "swin_transformer": "SwinTransformer", "vgg": "VGG",
               "vision_transformer": "VisionTransformer", "wideresnet": "WideResNet", "xception": "Xception",
               "xception_deeplab": "Xception"}


def size_overrides(size: int) -> str:
    """``-o`` flags that make the quick-start config's train/eval/infer ops produce ``size`` px."""
    if size == 32:
        return ""
    resize = size * 36 // 32
    return (f" -o Global.image_shape=[3,{size},{size}]"
            f" -o DataLoader.Train.dataset.transform_ops.1.RandCropImage.size={size}"
            f" -o DataLoader.Eval.dataset.transform_ops.1.ResizeImage.resize_short={resize}"
            f" -o DataLoader.Eval.dataset.transform_ops.2.CropImage.size={size}"
            f" -o Infer.transforms.1.ResizeImage.resize_short={resize}"
            f" -o Infer.transforms.2.CropImage.size={size}")


# Swin below 224 px (windows clipped to the stage resolution) makes paddle.inference's oneDNN
# kernels corrupt the heap (measured: 32 and 64 px crash, 224 px runs): the chain uses 224 px
NATIVE_SIZE_ONLY = {"swin_transformer": 224}
# families whose outputs need other losses / metrics than the quick start's: their own base config
QUICK_START_OF = {"googlenet": "test_tipc/configs/GoogLeNet/GoogLeNet_quick_start.yaml"}


def write_config(model: str, family: str, size: int) -> str:
    with open(TEMPLATE) as f:
        text = f.read()
    flags = size_overrides(size)
    base = QUICK_START_OF.get(family, QUICK_START)
    text = text.replace("PPLCNet_x0_25", model)
    text = text.replace(f"{QUICK_START} -o Arch.name={model}", f"{base} -o Arch.name={model}{flags}")
    path = os.path.join(ROOT, "test_tipc", "configs", FAMILY_DIRS.get(family, family), f"{model}_train_infer_python.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def model_facts(name: str):
    """(family module, input size for the chain, parameter count)."""
    import numpy as np
    import paddle
    from ppfreeze.arch import build_model
    with paddle.LazyGuard():
        model = build_model({"name": name, "class_num": 12})
    size = model.input_size or max(32, model.min_input_size)
    size = 64 if 32 < size < 64 else size
    family = type(model).__module__.rsplit(".", 1)[-1]
    size = NATIVE_SIZE_ONLY.get(family, size)
    return family, size, sum(int(np.prod(p.shape)) for p in model.parameters())


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="registered model names")
    parser.add_argument("--all-families", action="store_true",
                        help="the smallest model of every family that has no config yet")
    args = parser.parse_args(argv)
    from ppfreeze.arch import MODELS
    chosen = list(args.models)
    if args.all_families:
        have = {name.split("_train_infer")[0] for _, _, files in os.walk(os.path.join(ROOT, "test_tipc", "configs"))
                for name in files}
        best = {}
        for name in MODELS.names():
            if not MODELS.get(name).__module__.startswith("ppfreeze.arch.backbone") or name in ("PPLCNet",
                                                                                                "PPLCNetBaseNet"):
                continue
            family, size, params = model_facts(name)
            if family not in best or params < best[family][2]:
                best[family] = (name, size, params)
        covered = {model_facts(n)[0] for n in have if n in MODELS}
        # the WSL ResNeXts are ResNeXt's code at 88M+ parameters: not worth a chain of their own
        chosen += [name for family, (name, _, _) in sorted(best.items())
                   if family not in covered and family != "resnext101_wsl"]
    for name in chosen:
        family, size, _ = model_facts(name)
        print(write_config(name, family, size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
