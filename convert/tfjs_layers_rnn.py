"""TFJS layers-model writers for the recurrent layers: SimpleRNN, LSTM and GRU (``reset_after=False`` only)."""

from __future__ import annotations

from typing import Any

from convert.tfjs_layer_config import (
    LayerOut, Translator, activation, initializer, kernel_weights, no_regularizers, require, units_config,
)


def _rnn(class_name: str) -> Translator:
    def translate(layer: Any, cfg: dict[str, Any], notes: list[str]) -> LayerOut:
        where = f"{class_name} {cfg['name']!r}"
        require(not cfg.get("stateful"), f"{where} is stateful")
        if class_name == "GRU":
            require(not cfg.get("reset_after", True), f"{where} uses reset_after=True (the Keras 3 default): "
                     "TFJS 4.22's GRUCell refuses it, and its reset_after=False form computes the candidate "
                     "from U·(r∘h) where Keras computes r∘(U·h + b), which no choice of weights makes equal; "
                     "build the GRU with reset_after=False for a layers model")
        no_regularizers(cfg, notes)
        out = units_config(cfg, where, notes, "tanh") | {
            "recurrent_initializer": initializer(cfg.get("recurrent_initializer"), notes),
            "dropout": float(cfg.get("dropout", 0.0)),
            "recurrent_dropout": float(cfg.get("recurrent_dropout", 0.0)),
            "return_sequences": bool(cfg.get("return_sequences", False)),
            "return_state": bool(cfg.get("return_state", False)),
            "go_backwards": bool(cfg.get("go_backwards", False)),
            "stateful": False,
            "unroll": bool(cfg.get("unroll", False)),
        }
        if class_name in ("LSTM", "GRU"):
            out["recurrent_activation"] = activation(cfg.get("recurrent_activation", "sigmoid"), where)
            out["implementation"] = 2
        if class_name == "LSTM":
            out["unit_forget_bias"] = bool(cfg.get("unit_forget_bias", True))
        if class_name == "GRU":
            out["reset_after"] = False
        cell = layer.cell
        weights = kernel_weights(cell, out["use_bias"], "recurrent_kernel")
        return class_name, out, weights

    return translate


RNN: dict[str, Translator] = {name: _rnn(name) for name in ("SimpleRNN", "LSTM", "GRU")}
