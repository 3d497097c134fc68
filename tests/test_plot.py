"""lit-dpo plot and the PlotMetrics callback: curves from metrics.csv to a PNG."""

from __future__ import annotations

import os
import struct

import pytest
from conftest import tiny_fit_args

from lit_dpo.cli import main
from lit_dpo.errors import DataError
from lit_dpo.reporting.curves import DPI, FIGURE_INCHES, draw_metrics, read_metrics

PIXELS = (FIGURE_INCHES[0] * DPI, FIGURE_INCHES[1] * DPI)

CSV = """epoch,step,train/loss,train/rewards/accuracies,train/rewards/margins,train/rewards/chosen,\
train/rewards/rejected,val/loss,val/rewards/accuracies,val/logps_accuracy/policy,\
val/logps_accuracy/reference,val/rewards/margins,val/rewards/chosen,val/rewards/rejected
0,0,0.693,0.0,0.0,0.0,0.0,,,,,,,
0,1,0.650,0.75,0.08,0.05,-0.03,,,,,,,
0,1,,,,,,0.660,0.60,0.55,0.50,0.05,0.04,-0.01
0,2,0.610,1.0,0.20,0.12,-0.08,,,,,,,
0,3,0.580,1.0,0.30,0.18,-0.12,,,,,,,
0,3,,,,,,0.640,0.70,0.60,0.50,0.09,0.06,-0.03
"""


pytestmark = pytest.mark.usefixtures("one_thread")


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])  # IHDR: width, height


def test_read_metrics_drops_blanks(tmp_path):
    series = read_metrics(write_csv(tmp_path))
    assert series["train/loss"] == [(0, 0.693), (1, 0.65), (2, 0.61), (3, 0.58)]
    assert series["val/loss"] == [(1, 0.66), (3, 0.64)]
    assert "epoch" not in series and "step" not in series


def write_csv(folder):
    path = folder / "metrics.csv"
    path.write_text(CSV)
    return path


def test_draw_metrics_puts_each_metric_in_its_panel(tmp_path):
    figure = draw_metrics(read_metrics(write_csv(tmp_path)), title="run")
    panels = {axes.get_title(): axes for axes in figure.axes}
    assert list(panels) == [
        "DPO loss",
        "preference accuracy",
        "reward margin (chosen - rejected)",
        "implicit rewards",
    ]

    def curves(title):
        return {
            line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
            for line in panels[title].lines
        }

    loss = curves("DPO loss")
    assert loss["train"] == ([0, 1, 2, 3], [0.693, 0.65, 0.61, 0.58])
    assert loss["val"] == ([1, 3], [0.66, 0.64])
    accuracy = curves("preference accuracy")
    assert accuracy["val, log-prob (policy)"] == ([1, 3], [0.55, 0.6])
    assert accuracy["val, log-prob (reference)"] == ([1, 3], [0.5, 0.5])
    assert curves("reward margin (chosen - rejected)")["train"][1] == [0.0, 0.08, 0.2, 0.3]
    rewards = curves("implicit rewards")
    assert rewards["train, rejected"][1] == [0.0, -0.03, -0.08, -0.12]
    assert len(rewards) == 4
    with pytest.raises(DataError, match="no DPO metrics"):
        draw_metrics({"lr-AdamW": [(0, 1e-4)]})


def test_plot_command_picks_the_newest_version(tmp_path):
    root = tmp_path / "runs"
    for version, age in (("version_0", 100), ("version_1", 0)):
        folder = root / "lightning_logs" / version
        folder.mkdir(parents=True)
        os.utime(write_csv(folder), (1e9 - age, 1e9 - age))
    main(["plot", f"--run_dir={root}"])
    newest = root / "lightning_logs" / "version_1" / "metrics.png"
    assert png_size(newest) == PIXELS
    assert newest.stat().st_size > 20_000  # four panels of lines and text, not an empty canvas
    assert not (root / "lightning_logs" / "version_0" / "metrics.png").exists()

    version_0 = root / "lightning_logs" / "version_0"
    main(["plot", f"--run_dir={version_0}", f"--out={tmp_path / 'v0.png'}"])
    assert png_size(tmp_path / "v0.png") == PIXELS


def test_plot_command_without_metrics_says_what_to_pass(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", f"--run_dir={tmp_path}"])
    assert exit_info.value.code == 2
    assert "no metrics.csv" in capsys.readouterr().err


def test_fit_writes_metrics_png_with_the_final_validation(tiny_model_dir, tiny_data_dir, tmp_path):
    main(
        tiny_fit_args(
            tiny_model_dir,
            tiny_data_dir,
            tmp_path,
            "--trainer.callbacks+=lit_dpo.callbacks.PlotMetrics",
        )
    )
    run_dir = tmp_path / "lightning_logs" / "version_0"
    png = run_dir / "metrics.png"
    assert png_size(png) == PIXELS and png.stat().st_size > 20_000
    series = read_metrics(run_dir / "metrics.csv")
    assert [step for step, _ in series["train/loss"]] == [0, 1]
    assert len(series["val/loss"]) == 1
