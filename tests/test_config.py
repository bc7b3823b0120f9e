"""Run configs: JSON round trip, CLI flags one-to-one with fields, named errors."""

import dataclasses
import json

import pytest

from pyro_vae.cli import build_parser
from pyro_vae.config import TrainConfig, parse_hidden


def test_json_round_trip(tmp_path):
    config = TrainConfig.for_model("vae", z_dim=7, hidden=(200, 100), out=str(tmp_path))
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    assert TrainConfig.load(path) == config


def test_every_field_has_a_flag_and_help():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    dests = {a.dest for a in train._actions}
    for f in dataclasses.fields(TrainConfig):
        assert f.name in dests and f.metadata["help"]


@pytest.mark.parametrize("text, widths", [("400", (400,)), ("200,200", (200, 200)), (300, (300,)),
                                          ([5, 6], (5, 6)), ("", ())])
def test_parse_hidden(text, widths):
    assert parse_hidden(text) == widths


def test_unknown_fields_and_bad_json_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown fields \['zdim'\]"):
        TrainConfig.from_dict({"zdim": 3})
    (tmp_path / "c.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        TrainConfig.load(tmp_path / "c.json")
