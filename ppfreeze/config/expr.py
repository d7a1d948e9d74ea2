"""Safe arithmetic for PaddleClas-style string values such as ``scale: 1.0/255.0``.

PaddleClas calls ``eval`` on these strings; we only accept numbers and + - * / ** ( ).
"""
from __future__ import annotations

import ast
import operator
from typing import Any, Union

def _float_pow(base: float, exponent: float) -> float:
    # in floats, so 9**9**9 overflows at once instead of computing a huge integer for hours
    result = float(base) ** float(exponent)
    if isinstance(result, complex):   # (-8) ** 0.5
        raise ValueError(f"{base} ** {exponent} is not a real number")
    return result


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.Pow: _float_pow, ast.USub: operator.neg, ast.UAdd: operator.pos}


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.left), _eval(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.operand))
    raise ValueError("only numbers and + - * / ** ( ) are allowed")


def to_number(value: Any, key: str = "") -> Union[int, float]:
    """Turn ``value`` (a number or an arithmetic string like '1./255.') into a number."""
    from .errors import ConfigError
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return _eval(ast.parse(value.strip(), mode="eval").body)
        except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError, MemoryError) as e:
            raise ConfigError(key, f"expected a number or an arithmetic expression such as 1.0/255.0, "
                                   f"got {value!r} ({e})") from e
    raise ConfigError(key, f"expected a number, got {type(value).__name__} {value!r}")
