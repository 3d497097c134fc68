"""Every command is built the same way: typed arguments from its function, ``--help`` from its
docstring, ``--config FILE.yaml`` and ``--print_config``."""

from __future__ import annotations

import pytest
import yaml

from lit_dpo.cli import COMMANDS, main

# the smallest valid command line of each command, beside --config/--print_config
REQUIRED = {
    "data": ["--config=configs/cpu.yaml"],
    "preflight": ["--config=configs/cpu.yaml"],
    "compare": ["--adapter=runs/cpu/adapter"],
    "judge": ["--compare=runs/compare"],
    "serve": ["--adapter=runs/cpu/adapter"],
    "export": ["--adapter=runs/cpu/adapter", "--out=runs/cpu/merged"],
    "plot": ["--run_dir=runs/cpu"],
    "sweep": ["--config=configs/cpu.yaml", "--grid={model.objective.beta: [0.1, 0.2]}"],
}


def _run(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(args)
    return done.value.code or 0, capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_comes_from_the_docstring(name, capsys):
    code, out = _run([name, "--help"], capsys)
    assert code == 0
    assert "--config" in out and "--print_config" in out
    assert f"usage: lit-dpo {name}" in out
    # the first line of the function's docstring is the description
    import importlib
    import inspect

    command = COMMANDS[name]
    function = getattr(importlib.import_module(command.module), command.function)
    first_line = inspect.getdoc(function).splitlines()[0]
    assert " ".join(first_line.split()[:4]) in " ".join(out.split())


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_print_config_round_trips_through_a_config_file(name, capsys, tmp_path):
    code, printed = _run([name, *REQUIRED[name], "--print_config"], capsys)
    assert code == 0
    settings = yaml.safe_load(printed)
    config = tmp_path / f"{name}.yaml"
    config.write_text(printed)
    code, again = _run([name, f"--config={config}", "--print_config"], capsys)
    assert code == 0 and yaml.safe_load(again) == settings


def test_command_settings_and_fit_settings_share_one_config(capsys, tmp_path):
    config = tmp_path / "preflight.yaml"
    config.write_text("device: t4\nworst_case: true\ndata:\n  max_length: 128\n")
    code, printed = _run(
        ["preflight", "--config=configs/t4.yaml", f"--config={config}", "--print_config"], capsys
    )
    settings = yaml.safe_load(printed)
    assert (settings["device"], settings["worst_case"]) == ("t4", True)
    assert settings["data"]["max_length"] == 128
    assert settings["model"]["model"] == "Qwen/Qwen2-0.5B-Instruct"


def test_a_wrong_type_fails_before_anything_runs(capsys):
    with pytest.raises(SystemExit) as done:
        main(["compare", "--adapter=x", "--val_size=many"])
    assert done.value.code == 2
    assert "val_size" in capsys.readouterr().err


def test_an_unknown_command_lists_every_command(capsys):
    with pytest.raises(SystemExit) as done:
        main(["plott", "--run_dir=runs/cpu"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "unknown command 'plott'; did you mean 'plot'?" in err
    assert all(name in err for name in ("fit", "validate", *COMMANDS))
