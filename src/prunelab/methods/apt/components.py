"""APT's ablatable components: each option is a set of APTConfig overrides (method_args).

Every APT ablation of seeds 000-002 maps to one (component, option):

seed 000 (gemini): Static Tuning Rank -> tuning: static_initial / static_intermediate /
  static_final; No Knowledge Distillation (REMOVE) -> distillation: none; Late Pruning ->
  schedule: gradual / last_quarter; Fixed Pruning Mask -> masks: fixed; Standard Salience ->
  salience: standard.
seed 001 (claude): salience -> magnitude / gradient / random; Dynamic parameter addition ->
  tuning: static_initial ("static parameter allocation") / uniform; Parameter sharing in
  self-distillation (REMOVE) -> teacher_sharing: full_copy (= distillation: self_copy);
  Early-stage pruning -> schedule: last_quarter ("late pruning") / gradual / init.
seed 002 (llama): Adaptive pruning (REMOVE) -> pruning: off; Adaptive tuning (REMOVE) ->
  tuning: static_initial (the paper's "w/o A_T"); salience -> random / uniform;
  self-distillation (REMOVE) -> distillation: none; Pruning ratio (ADD 0.2/0.5/0.8) ->
  sparsity (numeric).

Intermediate / final static ranks: the adaptive budget grows linearly from N0 to 4 N0, so
the mid-run budget is 2.5 N0 and the final 4 N0; with every adapter at one rank those
budgets are r = 20 and r = 32 (initial r = 8).
"""
from __future__ import annotations

COMPONENTS: dict[str, dict] = {
    "salience": {
        "default": "outlier_aware",
        "options": {"outlier_aware": {"salience": "outlier_aware"},
                    "standard": {"salience": "standard"},
                    "magnitude": {"salience": "magnitude"},
                    "gradient": {"salience": "gradient"},
                    "fisher": {"salience": "fisher"},
                    "random": {"salience": "random"},
                    "uniform": {"salience": "uniform"}},
        "remove": "standard",
        "aliases": ["Outlier-aware salience scoring mechanism", "Outlier-aware salience scoring function for pruning",
                    "Outlier-aware salience scoring", "outlier-aware salience", "salience scoring",
                    "salience score", "salience", "kurtosis", "Standard Salience Score", "Salience Scoring Ablation",
                    "importance score", "importance scoring", "importance estimate", "block importance"],
        "option_aliases": {
            "outlier_aware": ["outlier-aware salience", "activation x gradient + kurtosis", "activation x gradient plus kurtosis",
                              "with the kurtosis term", "kurtosis bonus"],
            "standard": ["Standard activation-gradient product salience", "activation-gradient product",
                         "standard salience", "w/o kurtosis", "without kurtosis", "no kurtosis", "activation x gradient", "no outlier term"],
            "magnitude": ["magnitude-based scoring", "magnitude scoring", "weight magnitude", "magnitude", "absolute weight values", "weight norm", "|w|", "L1 norm of weights"],
            "gradient": ["gradient-based scoring", "gradient scoring", "gradient magnitude", "gradient norm", "gradient only"],
            "fisher": ["Fisher", "Fisher information", "Fisher-based scoring", "fisher scoring", "squared gradients", "empirical Fisher"],
            "random": ["Random scoring", "random", "random pruning", "random choice", "chosen at random"],
            "uniform": ["Uniform scoring", "uniform", "uniform pruning", "equal scores", "same score for all"],
        },
        "description": ("scores how important each block (attention head, FFN neuron, hidden dimension) is, to decide what gets pruned; "
                       "the default multiplies activations by gradients and adds a kurtosis term for outlier-aware importance"),
        "option_descriptions": {
            "outlier_aware": ["outlier-aware salience: activation times gradient plus a kurtosis bonus for blocks with outlier activations"],
            "standard": ["plain activation times gradient salience without the kurtosis or outlier term", "importance is the product of activations and their gradients, no outlier correction"],
            "magnitude": ["importance from the absolute values of the weights", "score blocks by the size (L1/L2 norm) of their weights", "weight-norm based importance, no gradients"],
            "gradient": ["importance from gradient magnitudes alone", "score blocks by how large their gradients are"],
            "fisher": ["importance from the Fisher information, squared gradients accumulated over batches", "second-order, Fisher-based importance estimate"],
            "random": ["random importance scores, blocks pruned at random", "pick which blocks to prune by chance"],
            "uniform": ["every block gets the same score, pruning spread evenly across layers", "equal importance for all blocks, uniform layer-wise pruning"],
        },
    },
    "tuning": {
        "default": "adaptive",
        "options": {"adaptive": {"tuning": "adaptive", "static_rank": None},
                    "static_initial": {"tuning": "static", "static_rank": None},
                    "static_intermediate": {"tuning": "static", "static_rank": 20},
                    "static_final": {"tuning": "static", "static_rank": 32},
                    "uniform": {"tuning": "uniform", "static_rank": None},
                    "none": {"tuning": "none", "static_rank": None}},
        "remove": "static_initial",
        "aliases": ["Adaptive tuning mechanism (dynamically increasing APT adapter ranks)",
                    "Adaptive tuning mechanism", "Adaptive tuning", "Dynamic parameter addition in salient layers",
                    "dynamic parameter addition", "dynamically increasing adapter ranks", "dynamic rank",
                    "adaptive rank", "Static Tuning Rank", "Adaptive Tuning Ablation", "A_T", "adapter rank",
                    "LoRA rank", "initial rank", "rank r", "adapter dimension", "adapter width", "bottleneck width",
                    "bottleneck dimension"],
        "option_aliases": {
            "static_initial": ["Fixed initial rank", "static parameter allocation", "static rank", "fixed rank",
                               "w/o A_T", "without adaptive tuning", "starting rank throughout", "initial rank for the whole run", "no rank growth", "constant initial rank", "static tuning"],
            "static_intermediate": ["Fixed intermediate rank", "intermediate rank", "middle rank", "medium rank", "r=20",
                                    "static intermediate rank"],
            "static_final": ["Fixed final rank", "final rank", "largest rank", "final rank from the start", "r=32",
                             "static final rank"],
            "uniform": ["uniform parameter addition", "uniform growth", "uniform rank growth",
                        "grow all adapters", "equal growth for all adapters", "evenly distributed ranks"],
            "none": ["frozen adapters", "head-only tuning", "zero adapter rank", "classifier head only", "no adapters"],
        },
        "numeric": "rank",               # 'r=4, r=8, r=16': the initial LoRA rank of every adapter
        "numeric_range": (1, 64),
        "description": ("how the LoRA adapters' ranks (the trainable parameters) change during training: by default ranks grow in the most "
                       "salient layers as the parameter budget rises, starting from the initial adapter rank r; a number sets "
                       "that initial rank (ranks still grow), a rank held fixed all run is a static_* option"),
        "option_descriptions": {
            "adaptive": ["adapter ranks grow dynamically in the most important layers during training",
                         "layers end up with different ranks: the salient ones get more of the added rank"],
            "static_initial": ["every adapter keeps its starting rank for the whole run, no rank growth", "adapter rank fixed at the initial value throughout training", "no new tuning parameters are ever added"],
            "static_intermediate": ["every adapter fixed at a middle rank (r=20) for the whole run", "constant medium adapter rank, about the average budget during training"],
            "static_final": ["every adapter fixed at the largest, final rank (r=32) from the start", "constant high adapter rank equal to the end-of-training budget"],
            "uniform": ["added parameters spread evenly: all adapters grow their rank at the same rate", "rank growth distributed uniformly across layers instead of to salient ones"],
            "none": ["adapters frozen with zero trainable rank; only the classification head is trained", "no parameter-efficient tuning at all, only the task head learns"],
        },
    },
    "distillation": {
        "default": "self",
        "options": {"self": {"distill": "self", "layer_loss": True},
                    "none": {"distill": "none", "layer_loss": True},
                    "no_layer_loss": {"distill": "self", "layer_loss": False},
                    "self_copy": {"distill": "self_copy", "layer_loss": True},
                    "self_snapshot": {"distill": "self_snapshot", "layer_loss": True},
                    "ft_teacher": {"distill": "ft_teacher", "layer_loss": True},
                    "lora_teacher": {"distill": "lora_teacher", "layer_loss": True}},
        "remove": "none",
        "aliases": ["Efficient self-knowledge distillation", "Efficient self-distillation",
                    "self-knowledge distillation", "self-distillation", "knowledge distillation", "distillation",
                    "No Knowledge Distillation", "Self-Distillation Ablation", "D_S"],
        "option_aliases": {
            "none": ["no distillation", "no knowledge distillation", "w/o self-distillation",
                     "without distillation", "w/o D_S", "no teacher", "task loss only"],
            "no_layer_loss": ["w/o L_layer", "no layer loss", "without layer distillation",
                              "prediction-only distillation", "no layer distillation", "output-only distillation", "logits only",
                              "no hidden-state loss", "without hidden-state alignment"],
            "self_copy": ["without parameter sharing", "no parameter sharing", "full frozen copy teacher",
                          "unshared teacher", "self-distillation without parameter sharing"],
            "self_snapshot": ["snapshot teacher", "copy-on-prune teacher", "unpruned snapshot teacher"],
            "ft_teacher": ["FT teacher", "fine-tuned teacher", "separate fine-tuned teacher",
                           "static distillation", "traditional distillation", "fully fine-tuned teacher", "pre-trained teacher"],
            "lora_teacher": ["LoRA teacher", "separate LoRA teacher", "LoRA-tuned teacher"],
        },
        "description": ("knowledge distillation used to recover accuracy while pruning: by default the student is taught by a teacher "
                       "that shares its frozen weights, with prediction and layer-wise (hidden state) losses"),
        "option_descriptions": {
            "self": ["self-distillation from a teacher that shares the student's frozen parameters"],
            "none": ["train with the task loss only, no teacher and no distillation loss"],
            "no_layer_loss": ["distil only the output predictions, dropping the intermediate layer / hidden-state matching loss",
                              "without the hidden-state matching loss: the teacher supervises the outputs only"],
            "self_copy": ["the teacher is a separate full frozen copy of the model rather than sharing weights with the student"],
            "self_snapshot": ["the teacher keeps an unpruned snapshot of the dense weights and the adapters, refreshed when "
                              "the dev score improves"],
            "ft_teacher": ["distil from a separately fully fine-tuned teacher model", "a conventional static teacher trained beforehand",
                           "a separate teacher trained by updating all of its weights (full fine-tuning)"],
            "lora_teacher": ["distil from a separately LoRA-tuned teacher model",
                             "a separate teacher trained with low-rank adapters only, its base weights frozen"],
        },
    },
    "teacher_sharing": {
        "default": "shared",
        "options": {"shared": {"distill": "self"}, "full_copy": {"distill": "self_copy"}},
        "remove": "full_copy",
        "aliases": ["Parameter sharing in self-distillation", "parameter sharing", "teacher parameter sharing",
                    "shared teacher"],
        "option_aliases": {"full_copy": ["full frozen copy", "separate teacher copy", "no parameter sharing",
                                         "without parameter sharing"]},
        "description": ("whether the self-distillation teacher reuses (shares) the student's frozen weights or is a separate full copy"),
        "option_descriptions": {
            "shared": ["teacher and student share the same frozen backbone parameters"],
            "full_copy": ["the teacher is a full separate frozen copy, no parameters shared with the student", "duplicate the model for the teacher instead of sharing weights"],
        },
    },
    "schedule": {
        "default": "early",
        "options": {"early": {"schedule": "early"}, "gradual": {"schedule": "gradual"},
                    "last_quarter": {"schedule": "last_quarter"}, "init": {"schedule": "init"}},
        "remove": "gradual",
        "aliases": ["Early pruning schedule", "Early-stage pruning strategy", "early pruning", "pruning schedule",
                    "Late Pruning", "Early Pruning Schedule Ablation", "when to prune"],
        "option_aliases": {
            "early": ["early pruning", "prune early", "front-loaded pruning", "pruning in the first part of training",
                      "progressively in the early phase of training"],
            "gradual": ["Prune gradually throughout training", "gradual pruning throughout training",
                        "gradual pruning", "prune throughout training", "progressively during the whole run", "a little every step", "until the end of training", "continuous pruning"],
            "last_quarter": ["Prune all at once in the last quarter of training", "late pruning",
                             "prune at the end", "last quarter", "near the end of training", "at the end", "delayed pruning", "prune late",
                             "final 25% of training", "last 25% of steps"],
            "init": ["one-shot pruning at initialization", "one-shot pruning", "prune at initialization",
                     "pruning at initialization", "one-shot at initialisation", "before training", "at step 0", "at the start", "up front", "at init", "prune first then train", "once at the beginning"],
        },
        "description": ("when in training the pruning happens: by default early, progressively during the first part of training"),
        "option_descriptions": {
            "early": ["prune early in training, finished well before the end",
                      "progressive pruning during the first part of training only"],
            "gradual": ["prune a little at every step, spread evenly over the whole training run", "progressive pruning that continues until the end of training"],
            "last_quarter": ["prune only late, all at once near the end of training (the final quarter)", "delay pruning until most of the training is done"],
            "init": ["prune once before training starts, at step zero, then train the pruned model", "one-shot pruning at initialization, all structures removed before any fine-tuning"],
        },
    },
    "masks": {
        "default": "adaptive",
        "options": {"adaptive": {"masks": "adaptive"}, "fixed": {"masks": "fixed"}},
        "remove": "fixed",
        "aliases": ["Adaptive update of pruning masks during early training", "adaptive mask update",
                    "adaptive pruning masks", "pruning masks", "mask update", "Fixed Pruning Mask"],
        "option_aliases": {"fixed": ["Compute mask once at the very beginning and keep fixed", "fixed pruning mask",
                                     "fixed mask", "static mask", "compute mask once", "mask never updated", "one-time mask", "frozen mask"]},
        "description": ("whether the pruning masks (which blocks are kept) are recomputed from fresh salience during training or computed "
                       "once and frozen"),
        "option_descriptions": {
            "adaptive": ["masks re-ranked and updated at every pruning step"],
            "fixed": ["compute which blocks to keep once, at the first pruning step, and never update the mask", "a static pruning mask that stays frozen for the rest of training"],
        },
    },
    "pruning": {
        "default": "adaptive",
        "options": {"adaptive": {"pruning": "adaptive"}, "off": {"pruning": "off"}},
        "remove": "off",
        "aliases": ["Adaptive pruning", "adaptive pruning A_P", "structured pruning", "pruning", "A_P"],
        "option_aliases": {"off": ["no pruning", "w/o A_P", "without pruning", "tuning only", "dense model", "no compression", "fine-tune only"]},
        "description": ("structured pruning of the model itself (heads, neurons, hidden dimensions removed during training); off means "
                       "the model is only fine-tuned, nothing is pruned"),
        "option_descriptions": {
            "adaptive": ["adaptive structured pruning during fine-tuning"],
            "off": ["no pruning at all: keep the full dense model and only fine-tune the adapters", "fine-tuning only, every parameter kept"],
        },
    },
    "sparsity": {
        "default": "0.6",
        "options": {"0.0": {"sparsity": 0.0}, "0.2": {"sparsity": 0.2}, "0.4": {"sparsity": 0.4}, "0.5": {"sparsity": 0.5},
                    "0.6": {"sparsity": 0.6}, "0.7": {"sparsity": 0.7}, "0.8": {"sparsity": 0.8}},
        "remove": "0.0",
        "aliases": ["Pruning ratio", "sparsity", "target sparsity", "pruning rate", "compression ratio",
                    "sparsity level", "density", "model density", "target density"],
        "option_aliases": {"0.6": ["60% sparsity", "paper sparsity"], "0.4": ["40% sparsity"],
                           "0.2": ["20% sparsity"], "0.5": ["50% sparsity"], "0.8": ["80% sparsity"],
                           "0.7": ["70% sparsity"]},
        "numeric": "sparsity",
        "numeric_range": (0.0, 0.99),
        "description": ("target sparsity: the fraction of the layers' (non-embedding) parameters removed by pruning; 1 minus the density"),
        "option_descriptions": {
            "0.0": ["nothing removed, zero sparsity"],
        },
    },
    "layout": {
        "default": "free",
        "options": {"free": {"layout": "free"}, "uniform": {"layout": "uniform"}},
        "remove": "uniform",          # without the layer-adaptive widths of the global ranking
        "aliases": ["layout", "pruning layout", "per-layer widths", "uniform layers", "layer-wise uniformity",
                    "stock checkpoint", "equal widths per layer", "layer-adaptive widths"],
        "option_aliases": {
            "uniform": ["uniform layout", "equal widths in every layer", "same number of heads per layer",
                        "stock layout", "vanilla config", "layer-uniform pruning"],
            "free": ["free layout", "per-layer widths", "non-uniform layers", "layer-wise free pruning"],
        },
        "description": ("whether pruning may leave different widths (heads, FFN neurons) in different layers, or must keep the same "
                       "widths in every layer so the pruned model is a stock transformers checkpoint"),
        "option_descriptions": {
            "free": ["each layer keeps its own number of heads and neurons, chosen by the global salience ranking"],
            "uniform": ["every layer keeps the same number of heads and FFN neurons (the k-th most salient unit of every layer "
                        "is pruned or kept together), so the export loads with plain from_pretrained, no remote code",
                        "equal widths in all layers, a vanilla checkpoint"],
        },
    },
}
