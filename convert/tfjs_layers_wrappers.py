"""TFJS layers-model writers for the wrappers, TimeDistributed and Bidirectional: each wraps a layer written by
one of the plain writers, which the topology passes in (``wrappers(plain)``), so that this module needs none of them.
"""

from __future__ import annotations

from typing import Any, Mapping

from convert.tfjs_layer_config import LayerOut, RNNS, Skip, Translator, base, require
from convert.tfjs_registry import missing_layer_reason


def _inner(plain: Mapping[str, Translator], layer: Any, cfg: dict[str, Any], notes: list[str], where: str) -> LayerOut:
    """The layer a wrapper holds, translated like a top-level layer. Raises Skip for what cannot be."""
    class_name = cfg.get("class_name")
    inner_cfg = cfg.get("config", {})
    if class_name not in plain:
        raise Skip(f"{where} wraps " + missing_layer_reason(str(class_name), inner_cfg.get("name", "?")))
    policy = getattr(getattr(layer, "dtype_policy", None), "name", "float32")
    require(policy == "float32", f"{where} wraps a layer with dtype policy {policy}; TFJS layers models are float32")
    return plain[class_name](layer, inner_cfg, notes)


def _time_distributed(plain: Mapping[str, Translator], layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    """TimeDistributed(layer): TFJS builds the inner layer in the wrapper's name scope (``<wrapper>/kernel``)."""
    where = f"TimeDistributed {cfg['name']!r}"
    class_name, inner, weights = _inner(plain, layer.layer, cfg["layer"], notes, where)
    return "TimeDistributed", base(cfg) | {"layer": {"class_name": class_name, "config": inner}}, weights


def _bidirectional(plain: Mapping[str, Translator], layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
    """Bidirectional(rnn): TFJS clones the forward layer with go_backwards flipped for the backward one,
    names them ``forward_<name>`` and ``backward_<name>`` and scopes their weights under the wrapper."""
    where = f"Bidirectional {cfg['name']!r}"
    require(cfg["layer"].get("class_name") in RNNS, f"{where} wraps {cfg['layer'].get('class_name')}, "
                                                      "the kit's writer handles SimpleRNN, LSTM and GRU only")
    require(not cfg["layer"].get("config", {}).get("return_state"),
             f"{where} returns states; the kit's writer does not route a Bidirectional's state outputs yet")
    f_class, forward, f_weights = _inner(plain, layer.forward_layer, cfg["layer"], notes, where)
    back_cfg = layer.backward_layer.get_config()
    b_class, backward, b_weights = _inner(plain, layer.backward_layer, {"class_name": type(layer.backward_layer).__name__,
                                                                 "config": back_cfg}, notes, where)
    same = ({k: v for k, v in forward.items() if k not in ("name", "go_backwards")}
            == {k: v for k, v in backward.items() if k not in ("name", "go_backwards")})
    require(f_class == b_class and same and backward["go_backwards"] != forward["go_backwards"],
             f"{where} has a backward layer that is not the forward one reversed, which TFJS 4.22's "
             "Bidirectional cannot hold (it clones the forward layer)")
    require(cfg.get("merge_mode", "concat") in ("concat", "sum", "mul", "ave", None),
             f"{where} uses merge_mode {cfg.get('merge_mode')!r}, which TFJS 4.22 lacks")
    stem = str(forward["name"])
    stem = stem[len("forward_"):] if stem.startswith("forward_") else stem
    inner = {**forward, "name": stem}
    weights = [(f"forward_{stem}/{suffix}", value) for suffix, value in f_weights]
    weights += [(f"backward_{stem}/{suffix}", value) for suffix, value in b_weights]
    out = base(cfg) | {"layer": {"class_name": f_class, "config": inner}, "merge_mode": cfg.get("merge_mode", "concat")}
    return "Bidirectional", out, weights



def wrappers(plain: Mapping[str, Translator]) -> dict[str, Translator]:
    """The wrapper writers over the ``plain`` (non-wrapper) writers they may wrap."""
    return {"TimeDistributed": lambda layer, cfg, notes: _time_distributed(plain, layer, cfg, notes),
            "Bidirectional": lambda layer, cfg, notes: _bidirectional(plain, layer, cfg, notes)}
