"""`prunelab list ...` prints the choices with one line each, and every flag has help text."""
import argparse
import json

import pytest

from prunelab.cli import main, parser

# the demo verb's flags belong to the demo engineer's lines of cli.py
NOT_OURS = {"demo"}


def listed(capsys, *argv):
    assert main(["list", *argv]) == 0
    return capsys.readouterr().out


def test_list_methods_models_tasks(capsys):
    methods = listed(capsys, "methods")
    assert any(ln.startswith("apt ") and "APT" in ln for ln in methods.splitlines())
    assert any(ln.startswith("lora ") and "LoRA" in ln for ln in methods.splitlines())
    models = listed(capsys, "models")
    assert any(ln.startswith("tiny-bert ") and "BERT" in ln for ln in models.splitlines())
    assert "minilm-l6" in models and "smollm2-135m" in models
    tasks = listed(capsys, "tasks")
    assert any(ln.startswith("glue/sst2 ") and "accuracy" in ln for ln in tasks.splitlines())
    assert any(ln.startswith("wikitext2 ") and "lower is better" in ln for ln in tasks.splitlines())
    for text in (methods, models, tasks):      # one line per choice, every one described
        assert all(len(ln.split(None, 1)) == 2 for ln in text.splitlines())


def test_list_components(capsys):
    out = listed(capsys, "components", "apt")
    sal = next(ln for ln in out.splitlines() if ln.startswith("salience "))
    assert "scores how important each block" in sal and "outlier_aware*" in sal and "fisher" in sal
    # a component without a description still says what its options set
    rescale = next(ln for ln in listed(capsys, "components", "masktune").splitlines() if ln.startswith("rescale "))
    assert "rescale=True" in rescale and "on*" in rescale
    assert json.loads(listed(capsys, "components", "apt", "--json"))["sparsity"]


@pytest.mark.parametrize("argv, words", [
    (["components", "aptt"], ["unknown method 'aptt'", "did you mean 'apt'", "valid:", "lora_prune"]),
    (["components"], ["needs a METHOD", "apt"]),
    (["methods", "apt"], ["only `list components` takes a METHOD"]),
])
def test_list_bad_input_one_line_exit_2(capsys, argv, words):
    assert main(["list", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("prunelab: error:")
    for w in words:
        assert w in err


def test_every_flag_of_every_verb_has_help():
    p = parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"prunelab {a.dest}" for a in p._actions if not a.help]
    helps = {c.dest: c.help for c in sub._choices_actions}
    for verb, sp in sub.choices.items():
        assert helps.get(verb), f"verb {verb} has no help"
        if verb in NOT_OURS:
            continue
        missing += [f"{verb} {a.option_strings or a.dest}" for a in sp._actions if not a.help]
    assert not missing, missing
