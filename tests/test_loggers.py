"""The trackers people use, from the shipped configs with no code change: every metric lit-dpo
logged reads back, equal, with the tool's own reader; and with no logger at all the plot, the run
summary and the reference-vs-policy table still come from the run's own MetricHistory."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from conftest import tiny_fit_args

from lit_dpo.callbacks import MetricHistory
from lit_dpo.cli import main, run_lightning_cli
from lit_dpo.reporting.curves import read_tensorboard

REPO = Path(__file__).parents[1]
LOGGERS = REPO / "configs" / "loggers"

pytestmark = pytest.mark.usefixtures("one_thread")


def _fit(tiny_model_dir, tiny_data_dir, root: Path, *extra: str) -> MetricHistory:
    """A tiny fit (2 steps, one validation) and the metric history lit-dpo kept of it."""
    args = tiny_fit_args(tiny_model_dir, tiny_data_dir, root, *extra)
    cli = run_lightning_cli(args)
    return MetricHistory.of(cli.trainer)


def _assert_same(history: MetricHistory, read_back: dict[str, list[tuple[int, float]]]) -> None:
    """Every train/* and val/* series lit-dpo logged, point for point (step and value), in what
    the tool stored; float32 where the tool stores float32."""
    logged = history.series()
    assert {"train/loss", "train/rewards/accuracies", "val/loss", "val/logps_accuracy/policy"} <= (
        set(logged)
    )
    for name, points in logged.items():
        assert name in read_back, f"{name} not in the tracker's store: {sorted(read_back)}"
        got = sorted(read_back[name])
        assert [step for step, _ in got] == [step for step, _ in points], name
        assert [value for _, value in got] == pytest.approx(
            [value for _, value in points], rel=1e-6, abs=1e-7
        ), name


def test_tensorboard_event_file_holds_what_was_logged(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    history = _fit(
        tiny_model_dir, tiny_data_dir, tmp_path, f"--config={LOGGERS / 'tensorboard.yaml'}"
    )
    (events,) = (tmp_path / "runs" / "cpu" / "lightning_logs" / "version_0").glob(
        "events.out.tfevents.*"
    )
    accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
    accumulator.Reload()
    read_back = {
        name: [(e.step, e.value) for e in accumulator.Scalars(name)]
        for name in accumulator.Tags()["scalars"]
    }
    _assert_same(history, read_back)
    assert not (tmp_path / "lightning_logs").exists()  # no CSV logger beside it
    # lit-dpo plot reads a finished run's event file when there is no metrics.csv
    _assert_same(history, read_tensorboard(events))
    main(["plot", f"--run_dir={tmp_path / 'runs'}", f"--out={tmp_path / 'curves.png'}"])
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "store",
    [
        "sqlite:///runs/mlflow.db",  # configs/loggers/mlflow.yaml
        "file:./runs/mlruns",  # the folder store MLflow 3 keeps only on request
    ],
)
def test_mlflow_local_store_holds_what_was_logged(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch, store
):
    """The local store of configs/loggers/mlflow.yaml (or the older folder store), read back with
    MlflowClient: what ``mlflow ui --backend-store-uri`` opens."""
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    history = _fit(
        tiny_model_dir,
        tiny_data_dir,
        tmp_path,
        f"--config={LOGGERS / 'mlflow.yaml'}",
        f"--trainer.logger.init_args.tracking_uri={store}",
    )
    assert (tmp_path / "runs" / ("mlflow.db" if store.startswith("sqlite") else "mlruns")).exists()
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("lit-dpo")
    (run,) = client.search_runs([experiment.experiment_id])
    read_back = {
        name: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)]
        for name in run.data.metrics
    }
    _assert_same(history, read_back)
    assert run.data.params["objective/beta"] == "0.1"  # the settings groups are there too


def _wandb_records(path: Path) -> list[bytes]:
    """The records of a W&B transaction log (``run-*.wandb``): a 7-byte W&B header, then
    LevelDB's log format (32 KiB blocks of records with a 7-byte header: CRC, length, type)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    block, position, records, pending = 32768, 7, [], b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:
            position += left
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # FULL or LAST: a record is complete
            records.append(pending)
            pending = b""
    return records


def test_wandb_offline_run_holds_what_was_logged(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch
):
    import wandb
    from wandb.proto import wandb_internal_pb2

    monkeypatch.chdir(tmp_path)
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_CONSOLE", "off")  # leave pytest's capture of stdout alone
    history = _fit(tiny_model_dir, tiny_data_dir, tmp_path, f"--config={LOGGERS / 'wandb.yaml'}")
    wandb.finish()  # what the end of the lit-dpo process does
    (log,) = (tmp_path / "runs" / "cpu" / "wandb").glob("offline-run-*/run-*.wandb")
    read_back: dict[str, list[tuple[int, float]]] = {}
    for data in _wandb_records(log):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") != "history":
            continue
        # a key with "/" in it is stored split, as nested_key
        row = {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for item in record.history.item
        }
        for name, value in row.items():
            if name.startswith(("train/", "val/")):
                read_back.setdefault(name, []).append((row["trainer/global_step"], value))
    _assert_same(history, read_back)


def test_without_a_logger_the_plot_summary_and_table_still_come(
    tiny_model_dir, tiny_data_dir, tmp_path, capsys
):
    history = _fit(
        tiny_model_dir,
        tiny_data_dir,
        tmp_path,
        "--trainer.logger=false",
        "--trainer.callbacks+=lit_dpo.callbacks.PlotMetrics",
    )
    out = capsys.readouterr().out
    final = history.last_validation()
    assert final["val/logps_accuracy/policy"] in (0.0, 0.5, 1.0)  # two held-out pairs
    # the summary, with the validation read from the history
    assert "run summary" in out
    reward = final["val/rewards/accuracies"]
    assert f"{'val reward accuracy':34}final {reward:.3f}" in out
    assert "no validation ran" not in out
    # the table of fit, and its JSON
    assert "held-out preference (fit)" in out
    margin = final["val/rewards/margins"]
    assert f"{reward:8.3f} / {margin:.3f}" in out
    report = json.loads((tmp_path / "fit_metrics.json").read_text())
    assert report.pop("reference") == "base"  # what the reference was, beside the numbers
    assert report == pytest.approx(final)
    # the plot, beside where a logger would have put its files
    png = tmp_path / "metrics.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert str(png) in out  # the summary names it
    assert not list(tmp_path.rglob("metrics.csv"))
