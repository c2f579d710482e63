"""Grid files (`rapref demo --grid FILE`) are checked before any work: a key given twice (PyYAML would keep the
last), an empty or repeated list, a setting of the wrong type or outside its range, an arm a claim or the report
needs but the grid leaves out. Each is one line naming the file and the key (exit 2), and nothing is written."""

from dataclasses import fields

import pytest

from rapref.cli import main as cli


@pytest.mark.parametrize("text, needle", [
    # duplicates that YAML would silently resolve
    ("cells:\n  a: {dpo_epochs: 3}\n  a: {dpo_epochs: 2}\n", "line 3: 'a' given twice in one mapping (first at line 2)"),
    ("cells:\n  a:\n    dpo_epochs: 3\n    dpo_epochs: 2\n", "line 4: 'dpo_epochs' given twice"),
    ("seeds: [1]\nseeds: [2]\ncells: {a: {}}\n", "'seeds' given twice"),
    ("cells:\n  a: {dpo_epochs: 3}\n  b: {dpo_epochs: 3}\n", "cells 'a' and 'b' have the same settings"),
    ("cells:\n  1: {dpo_epochs: 2}\n  '1': {dpo_epochs: 3}\n", "line 3: '1' given twice in one mapping (first at "
                                                             "line 2 as 1)"),
    # the same settings once the demo's defaults are filled in (1.0 is the default dpo_epochs)
    ("cells:\n  demo: {}\n  e1: {dpo_epochs: 1.0}\n", "cells 'demo' and 'e1' have the same settings"),
    ("cells:\n  a: {world.judge_noise: 1}\n  b: {world.judge_noise: 1.0}\n", "cells 'a' and 'b' have the same"),
    ("cells:\n  a: &d {dpo_epochs: 2}\n  b: {<<: *d}\n", "cells 'a' and 'b' have the same settings"),
    # a cell names a folder inside --out
    ("cells:\n  '..': {dpo_epochs: 2}\n", "cell '..': a name of letters"),
    ("cells:\n  '.': {dpo_epochs: 2}\n", "cell '.': a name of letters"),
    ("cells:\n  .hidden: {dpo_epochs: 2}\n", "not starting with '.'"),
    # empty and repeated lists
    ("seeds: []\ncells: {a: {}}\n", "seeds: expected a non-empty list"),
    ("arms: []\ncells: {a: {}}\n", "arms: expected a non-empty list"),
    ("claims:\ncells: {a: {}}\n", "claims: expected a non-empty list"),
    ("seeds: [1, 2, 1]\ncells: {a: {}}\n", "seeds: 1 listed twice"),
    ("seeds: 3\ncells: {a: {}}\n", "seeds: expected a non-empty list, got 3"),
    ("seeds: [1.5]\ncells: {a: {}}\n", "seeds: expected whole numbers"),
    ("seeds: [1.0]\ncells: {a: {}}\n", "seeds: expected whole numbers"),
    ("seeds: [true]\ncells: {a: {}}\n", "seeds: expected whole numbers"),
    ("seeds: [-1]\ncells: {a: {}}\n", "seeds: -1 is outside 0 to 4294967295"),
    ("seeds: [4294967296]\ncells: {a: {}}\n", "seeds: 4294967296 is outside 0 to 4294967295"),
    ("seeds: [1099511627776000000000]\ncells: {a: {}}\n", "is outside 0 to 4294967295"),
    # out-of-range and mistyped settings
    ("cells: {a: {world.judge_noise: -1}}\n", "cell 'a': world.judge_noise must be a finite number of 0 or more, got -1"),
    ("cells: {a: {world.judge_noise: .inf}}\n", "world.judge_noise must be a finite number of 0 or more, got inf"),
    ("cells: {a: {dpo_epochs: 0}}\n", "dpo_epochs must be a number above 0 and at most 100, got 0"),
    ("cells: {a: {dpo_epochs: 1.0e+12}}\n", "dpo_epochs must be a number above 0 and at most 100"),
    ("cells: {a: {1: 2}}\n", "cell 'a': unknown setting 1"),
    ("cells: {a: {dpo_lr: .nan}}\n", "dpo_lr must be a finite number above 0, got nan"),
    ("cells: {a: {batch_size: 2.5}}\n", "batch_size must be a whole number of at least 1, got 2.5"),
    ("cells: {a: {start_goal_fraction: 1.5}}\n", "start_goal_fraction must be a number from 0 to 1, got 1.5"),
    ("cells: {a: {world.generator_skills: []}}\n", "world.generator_skills must be a non-empty list of skills from 0 to 1, got ()"),
    ("cells: {a: {world.generator_skills: [0.9, 1.2]}}\n", "world.generator_skills must be a non-empty list of skills from 0 to 1, got (0.9, 1.2)"),
    ("cells: {a: {sweep_goals: [5, 5]}}\n", "at least two different goals from 1 to 10"),
    ("cells: {a: {goal_style: emoji}}\n", "goal_style must be one of digits, thermometer, opaque, got 'emoji'"),
    ("cells: {a: {world.completions_per_prompt: 1}}\n", "world.completions_per_prompt must be a whole number of at least 2, got 1"),
    # arms the claims and the report need
    ("arms: [start, start@10, relabeled@10]\ncells: {a: {}}\n", "arms: 'dpo' is missing"),
    ("arms: [start, start@10, dpo]\nclaims: [C4]\ncells: {a: {}}\n", "claims: C4 needs arm 'relabeled@10'"),
    ("arms: [start, start@10, dpo, relabeled@10]\ncells: {a: {}}\n", "claims: C3-steps needs arm 'dpo-dup'"),
], ids=lambda v: None)
def test_grid_mistakes_are_refused_before_any_work(tmp_path, capsys, text, needle):
    grid, out = tmp_path / "grid.yaml", tmp_path / "g"
    grid.write_text(text)
    assert cli(["demo", "--grid", str(grid), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and str(grid) in err, err
    assert not out.exists()


def test_a_grid_with_the_arms_its_claims_need_is_accepted():
    from rapref.studies.demo.grid import load_grid

    grid = load_grid("docs/demo-grid.yaml")
    assert len(grid["cells"]) == 8 and grid["seeds"] == [1, 2, 3, 4, 5]


def test_every_setting_a_cell_may_change_declares_its_rule_on_its_field():
    """A cell is checked by the rules on DemoConfig's and WorldConfig's fields (those `rapref demo`'s flags and
    `--config` files meet too), never by a second table of ranges."""
    from rapref.settings import spec_of
    from rapref.studies.demo.run import DemoConfig
    from rapref.studies.demo.world import WorldConfig

    checked = {f"{prefix}{f.name}" for prefix, cls in (("", DemoConfig), ("world.", WorldConfig))
               for f in fields(cls) if spec_of(f).rule or spec_of(f).choices}
    settings = {f.name for f in fields(DemoConfig)} | {f"world.{f.name}" for f in fields(WorldConfig)}
    assert settings - checked == {"out", "world", "quick", "arms", "decodings", "world.seed"}


def test_a_rule_broken_from_python_or_the_command_line_names_the_setting(capsys):
    from rapref.io import InputError
    from rapref.studies.demo.world import WorldConfig

    with pytest.raises(InputError, match="judge_noise must be a finite number of 0 or more, got -1"):
        WorldConfig(judge_noise=-1)
    assert cli(["demo", "--judge-noise", "-1", "--out", "unused"]) == 2
    assert "--judge-noise must be a finite number of 0 or more, got -1.0" in capsys.readouterr().err


def test_merge_keys_fill_in_a_cell_and_its_own_keys_win(tmp_path):
    """`<<: *anchor` (YAML's merge key) is read as YAML defines it: the cell's own keys override the merged ones."""
    from rapref.studies.demo.grid import load_grid

    path = tmp_path / "grid.yaml"
    path.write_text("cells:\n  a: &d {dpo_epochs: 2, beta: 0.2}\n  b: {<<: *d, beta: 0.3}\n")
    assert load_grid(path)["cells"] == {"a": {"dpo_epochs": 2, "beta": 0.2}, "b": {"dpo_epochs": 2, "beta": 0.3}}
