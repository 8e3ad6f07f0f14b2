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
                    "salience score", "salience", "kurtosis", "Standard Salience Score", "Salience Scoring Ablation"],
        "option_aliases": {
            "standard": ["Standard activation-gradient product salience", "activation-gradient product",
                         "standard salience", "w/o kurtosis", "without kurtosis", "no kurtosis"],
            "magnitude": ["magnitude-based scoring", "magnitude scoring", "weight magnitude", "magnitude"],
            "gradient": ["gradient-based scoring", "gradient scoring", "gradient magnitude"],
            "fisher": ["Fisher", "Fisher information", "Fisher-based scoring", "fisher scoring"],
            "random": ["Random scoring", "random", "random pruning"],
            "uniform": ["Uniform scoring", "uniform", "uniform pruning"],
        },
        "description": "how blocks are scored for pruning (kurtosis-augmented activation x gradient by default)",
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
                    "adaptive rank", "Static Tuning Rank", "Adaptive Tuning Ablation", "A_T"],
        "option_aliases": {
            "static_initial": ["Fixed initial rank", "static parameter allocation", "static rank", "fixed rank",
                               "w/o A_T", "without adaptive tuning"],
            "static_intermediate": ["Fixed intermediate rank", "intermediate rank"],
            "static_final": ["Fixed final rank", "final rank"],
            "uniform": ["uniform parameter addition", "uniform growth", "uniform rank growth",
                        "grow all adapters"],
            "none": ["frozen adapters", "head-only tuning", "zero adapter rank"],
        },
        "description": "how adapter ranks change: top-half growth with the budget (default), static, uniform, none",
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
                     "without distillation", "w/o D_S"],
            "no_layer_loss": ["w/o L_layer", "no layer loss", "without layer distillation",
                              "prediction-only distillation", "no layer distillation"],
            "self_copy": ["without parameter sharing", "no parameter sharing", "full frozen copy teacher",
                          "unshared teacher", "self-distillation without parameter sharing"],
            "self_snapshot": ["snapshot teacher", "copy-on-prune teacher", "unpruned snapshot teacher"],
            "ft_teacher": ["FT teacher", "fine-tuned teacher", "separate fine-tuned teacher",
                           "static distillation", "traditional distillation"],
            "lora_teacher": ["LoRA teacher", "separate LoRA teacher"],
        },
        "description": "teacher and losses used to recover accuracy while pruning",
    },
    "teacher_sharing": {
        "default": "shared",
        "options": {"shared": {"distill": "self"}, "full_copy": {"distill": "self_copy"}},
        "remove": "full_copy",
        "aliases": ["Parameter sharing in self-distillation", "parameter sharing", "teacher parameter sharing",
                    "shared teacher"],
        "option_aliases": {"full_copy": ["full frozen copy", "separate teacher copy", "no parameter sharing",
                                         "without parameter sharing"]},
        "description": "self-distillation teacher shares the student's frozen weights, or is a full frozen copy",
    },
    "schedule": {
        "default": "early",
        "options": {"early": {"schedule": "early"}, "gradual": {"schedule": "gradual"},
                    "last_quarter": {"schedule": "last_quarter"}, "init": {"schedule": "init"}},
        "remove": "gradual",
        "aliases": ["Early pruning schedule", "Early-stage pruning strategy", "early pruning", "pruning schedule",
                    "Late Pruning", "Early Pruning Schedule Ablation", "when to prune"],
        "option_aliases": {
            "gradual": ["Prune gradually throughout training", "gradual pruning throughout training",
                        "gradual pruning", "prune throughout training"],
            "last_quarter": ["Prune all at once in the last quarter of training", "late pruning",
                             "prune at the end", "last quarter"],
            "init": ["one-shot pruning at initialization", "one-shot pruning", "prune at initialization",
                     "pruning at initialization", "one-shot at initialisation"],
        },
        "description": "when pruning happens (fractions of the run; see schedule.py)",
    },
    "masks": {
        "default": "adaptive",
        "options": {"adaptive": {"masks": "adaptive"}, "fixed": {"masks": "fixed"}},
        "remove": "fixed",
        "aliases": ["Adaptive update of pruning masks during early training", "adaptive mask update",
                    "adaptive pruning masks", "pruning masks", "mask update", "Fixed Pruning Mask"],
        "option_aliases": {"fixed": ["Compute mask once at the very beginning and keep fixed", "fixed pruning mask",
                                     "fixed mask", "static mask", "compute mask once"]},
        "description": "re-rank blocks at every mask step (default) or freeze the ranking at its first computation",
    },
    "pruning": {
        "default": "adaptive",
        "options": {"adaptive": {"pruning": "adaptive"}, "off": {"pruning": "off"}},
        "remove": "off",
        "aliases": ["Adaptive pruning", "adaptive pruning A_P", "structured pruning", "pruning", "A_P"],
        "option_aliases": {"off": ["no pruning", "w/o A_P", "without pruning", "tuning only"]},
        "description": "prune during training (default) or not at all",
    },
    "sparsity": {
        "default": "0.6",
        "options": {"0.0": {"sparsity": 0.0}, "0.2": {"sparsity": 0.2}, "0.4": {"sparsity": 0.4}, "0.5": {"sparsity": 0.5},
                    "0.6": {"sparsity": 0.6}, "0.7": {"sparsity": 0.7}, "0.8": {"sparsity": 0.8}},
        "remove": "0.0",
        "aliases": ["Pruning ratio", "sparsity", "target sparsity", "pruning rate", "compression ratio",
                    "sparsity level"],
        "option_aliases": {"0.6": ["60% sparsity", "paper sparsity"], "0.4": ["40% sparsity"],
                           "0.2": ["20% sparsity"], "0.5": ["50% sparsity"], "0.8": ["80% sparsity"],
                           "0.7": ["70% sparsity"]},
        "numeric": "sparsity",
        "numeric_range": (0.0, 0.99),
        "description": "fraction of the layers' (non-embedding) parameters removed",
    },
}
