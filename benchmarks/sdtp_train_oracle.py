import math, dataclasses, torch, torch.nn.functional as F, json
from prunelab.methods.sdtp import _load
from prunelab.methods.sdtp.data import chunks, token_stream
from prunelab.methods.sdtp.inference import continuation_logits
from prunelab.methods.sdtp.presets import make_config
from prunelab.methods.sdtp.saliency import attention_targets
torch.set_num_threads(1)
m, tok = _load.load("smollm2-135m"); m.requires_grad_(False)
test = token_stream(tok, "test", None, m.config.vocab_size)
win = chunks(test, 5, 1088)
cfg = dataclasses.replace(make_config("paper"), pruner="saliency")
st = cfg.stage_layers(30)
nll = 0.0
for w in win:
    sal = attention_targets(m, w[None], st, 1024)[..., :1024]
    lg, _ = continuation_logits(m, cfg, w[None, :1024], w[None, 1024:], saliency=sal)
    nll += float(F.cross_entropy(lg[0].float(), w[1024:], reduction="sum"))
    print(nll, flush=True)
print("oracle attn ppl", math.exp(nll / (5 * 64)), "rise", math.exp(nll / (5 * 64)) / 19.471 - 1)
