"""Small synthetic data sets, one per task kind, in the layouts the task loaders read, so the
battery runs every task offline in seconds (no shared data needed)."""
import csv
import json
from pathlib import Path

SENTENCES = [("a great , moving film", 1), ("wonderful acting and a smart script", 1), ("i loved every minute", 1),
             ("funny and warm", 1), ("a dull , lifeless mess", 0), ("boring and far too long", 0),
             ("i hated it", 0), ("flat and lazy", 0)]
FACTS = [("the river runs through the old town near the market .", "where does the river run ?", "the old town"),
         ("maria built the bridge in nineteen twenty .", "who built the bridge ?", "maria"),
         ("the museum opens at nine every morning .", "when does the museum open ?", "at nine"),
         ("blue whales eat tiny krill in cold seas .", "what do blue whales eat ?", "tiny krill")]


def write_all(root: Path) -> Path:
    """Write sst2, squad, cnn_dailymail and wikitext-2 under root; return root."""
    sst2 = root / "sst2"
    sst2.mkdir(parents=True)
    for split in ("train", "dev"):
        with open(sst2 / f"{split}.tsv", "w") as f:
            f.write("sentence\tlabel\n")
            for i in range(3):
                for s, y in SENTENCES:
                    f.write(f"{s}{' !' * i}\t{y}\n")

    squad = root / "squad"
    squad.mkdir()
    paragraphs = [{"context": c, "qas": [{"id": f"q{i}", "question": q,
                                          "answers": [{"text": a, "answer_start": c.index(a)}]}]}
                  for i, (c, q, a) in enumerate(FACTS * 3)]
    for split in ("train", "dev"):
        (squad / f"{split}-v1.1.json").write_text(json.dumps({"data": [{"title": "t", "paragraphs": paragraphs}]}))

    cnn = root / "cnn_dailymail"
    cnn.mkdir()
    for split in ("train", "validation"):
        with open(cnn / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "article", "highlights"])
            for i, (c, q, a) in enumerate(FACTS * 3):
                w.writerow([str(i), f"{c} {q} {c}", a])

    wiki = root / "wikitext-2"
    wiki.mkdir()
    text = "".join(f" = section {i} =\n {c} {q} {a} .\n" for i, (c, q, a) in enumerate(FACTS * 4))
    for name in ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"):
        (wiki / name).write_text(text)
    return root
