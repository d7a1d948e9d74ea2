"""Write a "pretrained" weights file for a config's model, offline (TIPC's stand-in for a download).

    python test_tipc/make_pretrained.py -c configs/quick_start/ResNet18_freeze.yaml \
        --output ./test_tipc/pretrained/ResNet18_freeze            # -> ResNet18_freeze.pdparams

ppfreeze ships no weights and TIPC downloads nothing, so ``test_tipc/prepare.sh`` makes the
file that ``-o Global.pretrained_model`` (training) or ``pretrained_model_url`` (``whole_infer``)
names in a TIPC config: the model of the config's ``Arch`` section, initialised with
``--seed`` (not the training seed), with every BatchNorm running mean and variance set to
random values too. So a frozen tensor that training re-initialised or updated, including a BN
statistic, can never match the file by accident.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Optional

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

from ppfreeze.cli import build_parser, run_tool  # noqa: E402

BN_STAT_SUFFIXES = ("_mean", "_variance")


def make_pretrained(config: Dict[str, Any], output: str, seed: int) -> Dict[str, Any]:
    """Build ``config``'s model with ``seed``, randomise its BN statistics, save ``output``.pdparams.

    Returns the saved state dict (name -> numpy array).
    """
    import numpy as np
    import paddle
    from ppfreeze.arch import build_model

    paddle.seed(seed)
    model = build_model(config["Arch"], class_num=config["Global"].get("class_num"))
    rng = np.random.default_rng(seed)
    state = {}
    for name, tensor in model.state_dict().items():
        array = tensor.numpy()
        if name.endswith(BN_STAT_SUFFIXES[0]):
            array = rng.normal(0.0, 0.1, array.shape).astype(array.dtype)
        elif name.endswith(BN_STAT_SUFFIXES[1]):
            array = rng.uniform(0.5, 1.5, array.shape).astype(array.dtype)
        state[name] = array
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, output + ".pdparams")
    return state


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser("Write seeded weights (random BN statistics) for a config's model.")
    parser.add_argument("--output", required=True, help="path prefix; writes <output>.pdparams")
    parser.add_argument("--seed", type=int, default=20240611, help="initialisation seed (default 20240611)")

    def job(config, args):
        state = make_pretrained(config, args.output, args.seed)
        print(f"wrote {args.output}.pdparams: {config['Arch']['name']}, {len(state)} tensors, seed {args.seed}")

    return run_tool(parser, job, argv)


if __name__ == "__main__":
    sys.exit(main())
