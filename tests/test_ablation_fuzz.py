"""Random mutations and truncations of the seed plans: a Plan or a PrunelabError, nothing else."""
import glob
import random

import pytest

from prunelab.ablation.parse import load_plan
from prunelab.ablation.plan import Plan
from prunelab.errors import PrunelabError
from paths import SEEDS as SEEDS_DIR

SEED_FILES = sorted(glob.glob(f"{SEEDS_DIR}/00[0124]_*.txt"))
PIECES = ["### Ablation: ", "- **Ablated Part**: ", "- **Action**: ", "REPLACE", "REMOVE", "ADD", "- **Replacement**:",
          "  - ", "- **Metrics**: ", "|", "| A1 | x | k=v | h | ↓ |", "|---|---|", "{", "}", "[", "]", '"', ":",
          "\n", "    ", "**", "`", "<div>", "</div>", "<style>", "ðŸ", "↓↓", "→", "#### 6.1 X\n(A1–A9 results)",
          "ablations:\n  - ", "name: ", "\t", "\x00", "\ufeff", "0.5", "50%", "{\"name\": 1}\n"]


def _texts():
    texts = []
    for path in SEED_FILES:
        with open(path, encoding="utf-8") as f:
            texts.append(f.read())
    if texts:
        p = load_plan(SEED_FILES[0])
        texts += [p.to_jsonl(), p.to_yaml()]
    return texts


def mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        n = len(text)
        i, j = sorted((rng.randint(0, n), rng.randint(0, n)))
        if op == 0:
            text = text[:i] + text[j:][: max(0, n)]          # delete a span
        elif op == 1:
            text = text[:i] + rng.choice(PIECES) + text[i:]  # insert a plan-ish piece
        elif op == 2:
            text = text[:i]                                  # truncate
        elif op == 3:
            lines = text.split("\n")
            if len(lines) > 1:
                a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
                lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
        elif op == 4:
            lines = text.split("\n")
            k = rng.randrange(len(lines))
            lines.insert(k, lines[k])                        # duplicate a line
            text = "\n".join(lines)
        elif op == 5:
            text = text[:i] + "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(1, 8))) + text[i:]
        else:
            for word in ("REPLACE", "REMOVE", "Ablated Part", "Metrics", "ablations"):
                if word in text and rng.random() < 0.3:
                    text = text.replace(word, rng.choice(["", "FOO", word.lower(), word + word]), 1)
    return text


def check(text: str, fmt=None) -> None:
    try:
        plan = load_plan(text, format=fmt)
    except PrunelabError as e:
        assert "\n" not in str(e), str(e)
        return
    assert isinstance(plan, Plan) and plan.ablations


@pytest.mark.skipif(not SEED_FILES, reason=f"seed plans not found under {SEEDS_DIR}")
def test_random_mutations_never_crash():
    rng = random.Random(1234)
    texts = _texts()
    for k in range(400):
        base = texts[k % len(texts)]
        fmt = rng.choice([None, None, None, "markdown", "jsonl", "yaml", "table"])
        check(mutate(base, rng), fmt)


@pytest.mark.skipif(not SEED_FILES, reason=f"seed plans not found under {SEEDS_DIR}")
def test_every_truncation_point_of_a_seed_is_handled():
    text = _texts()[2]
    for cut in range(0, len(text), 37):
        check(text[:cut])


def test_hypothesis_fuzz():
    hyp = pytest.importorskip("hypothesis", reason="pip install hypothesis (the test extra) for property tests")
    from hypothesis import strategies as st

    texts = _texts() or ["### Ablation: X\n- **Ablated Part**: y\n- **Action**: REMOVE\n"]

    @hyp.settings(max_examples=150, deadline=None, derandomize=True)
    @hyp.given(st.sampled_from(range(len(texts))), st.integers(0, 10 ** 6), st.integers(0, 2 ** 31),
               st.text(max_size=40), st.sampled_from([None, "markdown", "jsonl", "yaml", "table"]))
    def prop(idx, pos, seed, junk, fmt):
        base = texts[idx]
        pos = pos % (len(base) + 1)
        check(mutate(base[:pos] + junk + base[pos:], random.Random(seed)), fmt)

    prop()
