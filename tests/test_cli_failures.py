"""A failure is one line on the terminal naming the verb, the exception and the log with the
full traceback; --debug prints the traceback too."""
from pathlib import Path

import pytest

import prunelab.cli as cli
import prunelab.run as run_mod
from prunelab.cli import main
from prunelab.store import Store
from prunelab.train.loop import TrainingDiverged
from test_cli_progress import tiny_train


def test_failure_after_training_is_one_line_and_a_log_on_the_row(sst2_dir, tmp_path, monkeypatch, capsys):
    # the run breaks after training, where a 30-line traceback used to land on the terminal
    def boom(*args, **kwargs):
        raise RuntimeError("boom after training")
    monkeypatch.setattr(run_mod, "measure_inference", boom)
    store = tmp_path / "r.db"
    assert main(tiny_train(sst2_dir, store, "--quiet", steps=2)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("prunelab: train failed: RuntimeError: boom after training (traceback: ")
    log = err[0].rsplit("(traceback: ", 1)[1].rstrip(")")
    assert Path(log).parent == tmp_path / "logs"
    text = Path(log).read_text()
    assert "Traceback (most recent call last)" in text and "boom after training" in text and "prunelab train" in text
    row = Store(store).runs()[0]
    assert row["status"] == "failed" and row["log"] == log and "boom" in row["error"]


@pytest.fixture
def broken_list(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)               # the default store, and so logs/, is under the cwd

    def boom(args):
        raise KeyError("no such thing")
    monkeypatch.setattr(cli, "cmd_list", boom)


def test_unexpected_error_in_any_verb_is_one_line_exit_1(broken_list, tmp_path, capsys):
    assert main(["list", "methods"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("prunelab: list failed: KeyError: 'no such thing' (traceback: ")
    logs = list((tmp_path / "runs" / "logs").glob("*-list-*.log"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text() and str(logs[0]) in err


@pytest.mark.parametrize("argv", [["--debug", "list", "methods"], ["list", "methods", "--debug"]])
def test_debug_prints_the_traceback(broken_list, capsys, argv):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in boom" in err
    assert err.strip().splitlines()[-1].startswith("prunelab: list failed: KeyError")


def test_a_diverged_run_is_one_line_with_its_log(sst2_dir, tmp_path, monkeypatch, capsys):
    def diverge(config, progress=None, **_):
        raise TrainingDiverged("loss is nan at step 3")
    monkeypatch.setattr(run_mod, "execute", diverge)
    assert main(tiny_train(sst2_dir, tmp_path / "r.db")) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train failed" in err and "diverged: loss is nan at step 3" in err
    log = err.rsplit("(log: ", 1)[1].rstrip(")")
    assert "TrainingDiverged" in Path(log).read_text()
    assert Store(tmp_path / "r.db").runs()[0]["log"] == log


def test_bad_input_stays_one_line_exit_2(tmp_path, capsys, sst2_dir):
    assert main(tiny_train(sst2_dir, tmp_path / "r.db", "--method", "lorra")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("prunelab: error: unknown method 'lorra'")


@pytest.mark.parametrize("argv, words", [
    (["train", "--seed", "x"], ["prunelab train: error: argument --seed: invalid int value: 'x'", "prunelab train -h"]),
    (["list", "foo"], ["invalid choice: 'foo'", "methods"]),
    (["nosuchverb"], ["invalid choice: 'nosuchverb'", "train"]),
])
def test_usage_errors_are_one_line_exit_2(capsys, argv, words):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.count("\n") == 0
    for w in words:
        assert w in err


def test_a_store_that_cannot_be_opened_is_bad_input(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["runs", "ls", "--store", str(tmp_path / "file" / "r.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("prunelab: error: cannot open the results store")
