"""The common battery (peft's common-tester pattern): every registered method x every model
family x every task kind the method and family support:

  pre-prune the tiny model to widths drawn by hypothesis -> train a few steps under the
  TrainingInvariants observer -> finalize -> measure inference -> export -> reload the export
  in a fresh Python (no prunelab) with the plain transformers Auto class -> same logits
  (and, for LM and seq2seq, the same greedy generation).

Methods come from the registry, so a method registered later joins without new test code.
Methods with a `runner` (SDTP: not a fine-tuning run) have their own tests and are skipped
here with that reason; registry aliases (same config and build) run once.

Every drawn width set has, by construction, the awkward shapes exports used to break on: a
hidden size that is not a multiple of the head count, a layer with no heads (T5: a cross
attention; its self-attentions share one position bias), a layer with no FFN neurons, and
on LLaMA (GQA) a layer with a single kv group left.
"""
import json
import os
import subprocess
import sys

import pytest
import torch
import transformers
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from battery_data import write_all
from prunelab.config import RunConfig, TrainConfig
from prunelab.methods.registry import get_method, list_methods
from prunelab.models import get_family
from prunelab.models.load import TASK_AUTO
from prunelab.models.testing import example_batch, outputs
from prunelab.run import export_model, measure_inference, prepare, train_model
from prunelab.train.invariants import TrainingInvariants

transformers.utils.logging.disable_progress_bar()

MODELS = {"bert": "tiny-bert", "roberta": "tiny-roberta", "t5": "tiny-t5", "llama": "tiny-llama"}
TASKS = {"classification": "glue/sst2", "qa": "squad", "seq2seq": "cnn_dailymail", "lm": "wikitext2"}
# task kinds each family has an exportable head for
FAMILY_KINDS = {"bert": ("classification", "qa"), "roberta": ("classification", "qa"),
                "t5": ("classification", "qa", "seq2seq"), "llama": ("classification", "qa", "lm")}
ADAPTER = {"roberta": "bert"}                          # family adapter name, where it differs
STEPS = 4
FAST_MEASURE = {"batch_sizes": [2], "seq_len": 8, "repeats": 1, "warmup": 0, "min_seconds": 0}


def _method_cases():
    cases, seen = [], {}
    for name in list_methods():
        m = get_method(name)
        if m.runner is not None:
            cases.append(pytest.param(name, None, None, marks=pytest.mark.skip(
                reason=f"{name} has a runner (not a fine-tuning run); covered by its own tests")))
            continue
        key = (m.config_cls, m.build)
        if key in seen:
            cases.append(pytest.param(name, None, None, marks=pytest.mark.skip(
                reason=f"{name} is an alias of {seen[key]} (same config and build)")))
            continue
        seen[key] = name
        turn = len(seen) - 1
        for f, (family, kinds) in enumerate(FAMILY_KINDS.items()):
            for k, kind in enumerate(kinds):
                if not m.supports(kind, ADAPTER.get(family, family)):
                    marks = pytest.mark.skip(reason=f"{name} declares no {kind} on {family}")
                elif (f + turn) % 2 or k != (turn // 2 + f) % len(kinds):
                    # the fast set (2 CPU cores, a few minutes): every method on two families, the
                    # families and task kinds taken in turn across methods so each family and kind
                    # is met; the rest of the product runs with the slow tests
                    marks = pytest.mark.slow
                else:
                    marks = ()
                cases.append(pytest.param(name, family, kind, marks=marks, id=f"{name}-{family}-{kind}"))
    return cases


# ---- widths --------------------------------------------------------------------------------------
def draw_widths(data, fam) -> dict:
    """Keep-lists for prune_heads / prune_neurons / prune_hidden with the awkward cases above."""
    blocks, ffns = fam.attention_blocks(), fam.ffn_blocks()
    free = [i for i, b in enumerate(blocks) if not (fam.name == "t5" and b.kind == "self")]
    no_heads = data.draw(st.sampled_from(free), label="block with no heads")
    heads = {}
    for i in free:
        n = blocks[i].num_units
        if i == no_heads:
            heads[i] = []
        elif fam.name == "llama" and i == next(j for j in free if j != no_heads):
            heads[i] = [data.draw(st.integers(0, n - 1), label=f"the one kv group of block {i}")]
        else:
            heads[i] = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n), label=f"heads {i}"))
    layer_no_heads = blocks[no_heads].layer
    others = [i for i, f in enumerate(ffns) if f.layer != layer_no_heads] or list(range(len(ffns)))
    no_ffn = data.draw(st.sampled_from(others), label="FFN with no neurons")
    neurons = {i: [] if i == no_ffn else sorted(data.draw(
        st.sets(st.integers(0, f.size - 1), min_size=1, max_size=f.size), label=f"neurons {i}"))
        for i, f in enumerate(ffns)}
    h, n_heads = fam.hidden_size, blocks[0].num_heads
    size = data.draw(st.integers(h // 2, h - 1).filter(lambda s: s % n_heads), label="hidden size")
    hidden = sorted(data.draw(st.permutations(range(h)), label="hidden order")[:size])
    return {"heads": heads, "neurons": neurons, "hidden": hidden}


def apply_widths(fam, w):
    for i, keep in w["heads"].items():
        fam.prune_heads(i, keep)
    for i, keep in w["neurons"].items():
        fam.prune_neurons(i, keep)
    fam.prune_hidden(w["hidden"])


# ---- reloading in a fresh process ------------------------------------------------------------------
CHILD = r"""
import json, sys, torch, transformers
torch.set_num_threads(1)
transformers.utils.logging.set_verbosity_error()
for line in sys.stdin:
    item = json.loads(line)
    try:
        ref = torch.load(item["ref"])
        model = getattr(transformers, item["auto"]).from_pretrained(item["dir"], trust_remote_code=True).eval()
        with torch.no_grad():
            out = model(**ref["x"])
        y = torch.cat([out.start_logits, out.end_logits], -1) if item["auto"].endswith("QuestionAnswering") else out.logits
        gen = None
        if "generated" in ref:  # generation models must also generate what the in-memory model does
            x = ref["x"]
            gen = model.generate(input_ids=x["input_ids"], attention_mask=x["attention_mask"], max_new_tokens=3,
                                 do_sample=False, pad_token_id=0).tolist()
        reply = {"class": type(model).__name__, "shape": list(y.shape), "generated": gen,
                 "max_diff": float((y - ref["y"]).abs().max()) if y.shape == ref["y"].shape else None,
                 "prunelab_imported": any(m.split(".")[0] == "prunelab" for m in sys.modules)}
    except Exception as e:
        reply = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(reply), flush=True)
"""


class FreshPython:
    """One child Python per test module that reloads exports on request (the imports of torch and
    transformers are paid once). It gets neither PYTHONPATH nor our working directory."""

    def __init__(self, workdir):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(workdir / "hf_modules"), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=workdir, env=env)

    def reload(self, directory, ref, auto) -> dict:
        self.proc.stdin.write(json.dumps({"dir": str(directory), "ref": str(ref), "auto": auto}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the fresh Python died (exit {self.proc.poll()})"
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def battery_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("battery")
    data = write_all(root / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRUNELAB_CACHE", str(root / "cache"))       # CoFi teachers stay in the test's tmp dir
        fresh = FreshPython(root)
        yield {"data": str(data), "fresh": fresh}
        fresh.close()


def run_case(method, family, kind, widths_data, env, out_dir):
    config = RunConfig(model=MODELS[family], task=TASKS[kind], method=method, data_dir=env["data"],
                       train=TrainConfig(batch_size=4, max_steps=STEPS, eval_points=1, train_limit=16,
                                         eval_limit=4, eval_batch_size=4, max_length=32),
                       measure=FAST_MEASURE).resolve()
    setup = prepare(config)
    setup.task.max_new_tokens = 4                        # seq2seq dev eval generates; keep it short
    fam = get_family(setup.loaded.model)
    widths = draw_widths(widths_data, fam)
    note(f"widths: {widths}")
    apply_widths(fam, widths)
    setup.loaded.family = get_family(setup.loaded.model)

    invariants = TrainingInvariants()
    # the observer needs the plugin (extra trainable parameters); catch it as train_model builds it
    build = setup.method.build

    def watched_build(*a, **k):
        invariants.plugin = build(*a, **k)
        return invariants.plugin

    setup.method = _with_build(setup.method, watched_build)
    done = train_model(config, setup, callbacks=[invariants])
    assert invariants.steps_checked == STEPS
    model = done.model
    assert not get_family(model).masks_active()
    measured = measure_inference(model, setup.task, setup.loaded.tokenizer, setup.dev_features, config, done.device)
    assert measured["flops_per_sample"] > 0 and measured["throughput_bs2"] > 0
    export_model(model, out_dir, setup.loaded.tokenizer)

    x = example_batch(model)
    ref = {"x": x, "y": outputs(model, x)}
    if kind in ("lm", "seq2seq"):
        ref["generated"] = model.generate(input_ids=x["input_ids"], attention_mask=x["attention_mask"],
                                          max_new_tokens=3, do_sample=False, pad_token_id=0).tolist()
    torch.save(ref, out_dir / "ref.pt")
    return ref


def _with_build(method, build):
    import dataclasses

    return dataclasses.replace(method, build=build)


@pytest.mark.parametrize("method, family, kind", _method_cases())
def test_battery(method, family, kind, battery_env, tmp_path):
    @settings(max_examples=1, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def case(widths_data):
        out = tmp_path / "export"
        ref = run_case(method, family, kind, widths_data, battery_env, out)
        auto = TASK_AUTO[kind].__name__
        reply = battery_env["fresh"].reload(out, out / "ref.pt", auto)
        assert "error" not in reply, reply.get("error")
        assert not reply["prunelab_imported"]
        assert reply["max_diff"] is not None, f"reloaded output has shape {reply['shape']}"
        assert reply["max_diff"] < 1e-4, f"reloaded {reply['class']} differs by {reply['max_diff']}"
        assert reply["generated"] == ref.get("generated")

    case()
