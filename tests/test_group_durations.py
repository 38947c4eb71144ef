"""tests.helpers.GroupDurations: the order ``pytest -n`` starts its groups in, from this machine's last run."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from tests.helpers import GroupDurations


class _Item:
    def __init__(self, nodeid: str, group: str | None = None) -> None:
        self.nodeid, self.group = nodeid, group

    def get_closest_marker(self, name: str):
        assert name == "xdist_group"
        return SimpleNamespace(args=(self.group,), kwargs={}) if self.group else None


ITEMS = [_Item("a.py::t1"), _Item("a.py::t2"), _Item("b.py::t1"), _Item("z.py::m1", "zoo"), _Item("c.py::t1"),
         _Item("z.py::m2", "zoo")]


def test_without_a_file_nothing_moves(tmp_path: Path) -> None:
    assert GroupDurations.read(tmp_path).longest_first(ITEMS) == ITEMS
    (tmp_path / GroupDurations.FILE).write_text("[1, 2]")  # not an object: ignored
    assert GroupDurations.read(tmp_path).longest_first(ITEMS) == ITEMS


def test_the_longest_groups_go_first_each_in_its_order_an_unknown_one_at_the_median(tmp_path: Path) -> None:
    (tmp_path / GroupDurations.FILE).write_text(json.dumps({"a.py": 1.0, "b.py": 50.0, "zoo": 20.0}))
    ordered = GroupDurations.read(tmp_path).longest_first(ITEMS)
    assert [i.nodeid for i in ordered] == ["b.py::t1", "z.py::m1", "z.py::m2", "c.py::t1", "a.py::t1", "a.py::t2"]


def test_a_run_records_its_groups_over_the_old_ones(tmp_path: Path) -> None:
    (tmp_path / GroupDurations.FILE).write_text(json.dumps({"a.py": 1.0, "gone.py": 3.0}))
    durations = GroupDurations.read(tmp_path)
    for nodeid, seconds in (("a.py::t1@a.py", 2.0), ("a.py::t1@a.py", 0.5), ("z.py::m1[x]@zoo", 4.0)):
        durations.pytest_runtest_logreport(SimpleNamespace(nodeid=nodeid, duration=seconds))
    durations.pytest_sessionfinish(None)
    assert json.loads((tmp_path / GroupDurations.FILE).read_text()) == {"a.py": 2.5, "gone.py": 3.0, "zoo": 4.0}
    assert [p.name for p in tmp_path.iterdir()] == [GroupDurations.FILE]
