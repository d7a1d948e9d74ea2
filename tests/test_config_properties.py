"""Property-based tests of the config loader and the override parser (hypothesis).

Whatever a user writes, a YAML document, an ``-o`` override or an arithmetic string, the result
is a valid config (a number) or a ConfigError: never another exception, never a hang (every
example has a deadline of 2 s). 720 generated examples plus the known traps, about 15 s on 2 cores.
"""
import math
import os
import string
import tempfile

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppfreeze.config import ConfigError, load_config
from ppfreeze.config.expr import to_number
from ppfreeze.config.loader import apply_overrides, get_by_path, parse_override

SETTINGS = settings(max_examples=200, deadline=2000, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# ----------------------------------------------------------------------------- strategies
KEYS = st.sampled_from(["Global", "Arch", "Loss", "Metric", "DataLoader", "Infer", "Optimizer", "Freeze", "EMA",
                        "AMP", "Train", "Eval", "Query", "Gallery", "dataset", "sampler", "loader", "name",
                        "epochs", "seed", "class_num", "device", "max_train_steps", "image_shape", "_BASE_",
                        "_delete_", "Global ", "globl", "0", "-1", "1e3", "null", "true", "<<"])
SCALARS = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=True)
           | st.text(max_size=12) | st.sampled_from(["cpu", "gpu", "auto", "ResNet18", "1.0/255.0", "9**9**9",
                                                     "2001-13-45", "0x1F", "1:20", ".inf", "~", "[", "]", "{a: 1}"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS | st.text(max_size=6),
                                                                                        inner, max_size=3),
                      max_leaves=8)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=5)
# text that looks like YAML: indentation, colons, dashes, brackets, anchors, tags and quotes
YAMLISH = st.text(alphabet=string.ascii_letters[:8] + string.digits[:4] + " :-\n\t[]{},&*!|>'\"#%@`.=_\\",
                  max_size=80)
EXPRESSIONS = st.recursive(
    st.integers(-10 ** 6, 10 ** 6).map(str) | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | st.sampled_from(["9", "0", "0.0", "1e308", "-1", "255.0", "2", "(-8)", "1e-320"]),
    lambda inner: st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "**", " ** ", "//", "%"]), inner).map("".join)
    | inner.map(lambda e: f"({e})") | inner.map(lambda e: f"-{e}"),
    max_leaves=12)


def _valid_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_DIRECTORY = tempfile.mkdtemp(prefix="ppfreeze_properties_")


def _load(text):
    path = os.path.join(_DIRECTORY, "cfg.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return load_config(path)


BASE = {"Global": {"device": "cpu", "epochs": 2}, "Arch": {"name": "ResNet18", "class_num": 4},
        "DataLoader": {"Train": {"dataset": {"transform_ops": [{"DecodeImage": None}, {"ResizeImage": {"size": 4}}]},
                                 "sampler": {"batch_size": 2}}}}


# ----------------------------------------------------------------------------- properties
@SETTINGS
@given(EXPRESSIONS | st.text(max_size=40))
def test_to_number_gives_a_number_or_a_config_error(text):
    try:
        value = to_number(text, "x")
    except ConfigError:
        return
    assert _valid_number(value), (text, value)


@settings(SETTINGS, max_examples=120)
@given(DOCUMENTS)
def test_any_structured_document_loads_or_is_a_config_error(document):
    try:
        text = yaml.safe_dump(document, allow_unicode=True)
    except yaml.YAMLError:
        return
    try:
        cfg = _load(text)
    except ConfigError:
        return
    assert isinstance(cfg, dict) and isinstance(cfg["Global"], dict) and isinstance(cfg["Arch"], dict)


@SETTINGS
@given(YAMLISH | st.text(max_size=60))
def test_any_text_loads_or_is_a_config_error(text):
    try:
        cfg = _load(text)
    except ConfigError:
        return
    assert isinstance(cfg, dict)


@SETTINGS
@given(st.text(max_size=40) | st.tuples(st.lists(KEYS | st.text(max_size=4), min_size=1, max_size=5),
                                       YAMLISH).map(lambda kv: ".".join(kv[0]) + "=" + kv[1]))
def test_any_override_applies_or_is_a_config_error(text):
    import copy
    cfg = copy.deepcopy(BASE)
    try:
        parts, _ = parse_override(text)
        apply_overrides(cfg, [text])
    except ConfigError:
        return
    assert isinstance(cfg, dict) and all(isinstance(part, str) and part for part in parts)
    get_by_path(cfg, text.split("=", 1)[0])   # reading the same path back never raises


def test_known_traps_are_config_errors():
    """Examples found while writing these properties, kept as plain regressions."""
    for text in ("(-8)**0.5", "9**9**9", "1/0", "0**-1", "(" * 300 + "1" + ")" * 300, "9" * 5000):
        with pytest.raises(ConfigError):
            to_number(text, "x")
    assert math.isinf(to_number("1e308*10", "x"))
    for override in ("DataLoader.Train.dataset.transform_ops." + "9" * 5000 + ".x=1",
                     "DataLoader.Train.dataset.transform_ops.\u00b2.x=1"):
        with pytest.raises(ConfigError):
            apply_overrides({**BASE}, [override])
    for text in ("Global: {x: 2001-13-45}\nArch: {name: a}\n", "[" * 500 + "]" * 500,
                 "Global: {}\nArch: {}\n_BASE_: 3\n", "Global: {}\nArch: {}\n_BASE_: [null]\n"):
        with pytest.raises(ConfigError):
            _load(text)
