"""Defenses against the course's attacks (notebooks 04–05; being built).

What lives here: model modifications (attention modules, pruning plans) registered with
:func:`medadv_lib.models.register_modification`, so that a checkpoint's model spec rebuilds the
defended module and loads it with ``weights_only=True``; and per-batch perturbation hooks for
:func:`medadv_lib.train.fit` (UAP fine-tuning, universal and PGD adversarial training), so that one
training loop serves clean training and every defense.
"""
