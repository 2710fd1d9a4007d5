"""The course layer: settings shared by every notebook (:mod:`.config`), the pipelines that build or load
the course's models, UAPs, defenses and robustness tables (:mod:`.pipelines`), notebook 02's section-8 experiments
on the levers of the gap to the paper (:mod:`.uap_experiments`), results as data
(:mod:`.results`), the papermill runner (:mod:`.runner`, ``python -m medadv_lib.course.runner``) and the
"terms before use" check of the notebooks against the glossary (:mod:`.terms`).

Notebook 01 trains the classifiers; notebooks 02+ call :func:`course_model` with the same arguments
and get the cached checkpoint (or train it themselves when run standalone); likewise :func:`course_uap`,
:func:`course_defense` and :func:`course_robustness`.
"""
from .config import (ADVERSARIAL_FAST, ADVERSARIAL_FULL, ATTACKS_FAST, ATTACKS_FULL, DEFENSE_ARMS, DEFENSE_ARMS_FAST, DEFENSE_FAST, DEFENSE_FULL, DEFENSE_BASE, defense_base, FAST, FULL, FULL_LR, SPARSITY_GRID,  # noqa: F401
                     UAP_FAST, UAP_FULL, adversarial_settings, attack_settings, defense_arms, model_config, parse_defense, robustness_settings, settings,
                     uap_grid_settings,
                     uap_settings)
from .pipelines import (ablation_verdict, best_arm_text, robustness_overview, course_defense, course_model, course_robustness, course_uap, defend_checkpoint,  # noqa: F401
                        uap_build_images,
                        defended_models_table, defense_study, eval_images, finetune_config, robustness_study,
                        leaders, precision_agreement, replicate_arms, replicate_text, seed_replicates, sparsity_sweep,
                        sparsity_verdict, transfer_examples)
from .adversarial import (METHODS, adversarial_finetune, adversarial_recap, adversarial_training,  # noqa: F401
                          adversarial_verdicts, best_arm_of_04, course_adversarial_training, course_uap_finetune,
                          cross_threat_table, fresh_rate_trend, method_label, method_labels, old_uap_before_after, old_uap_closed, pattern_change_text, rounds_narrative, rounds_table,
                          uap_fooling_summary, judge_uap, attacker_text,
                          uap_finetune_rounds)
from .transfer import DEFENDED, transfer_study  # noqa: F401
from .uap_experiments import LEVERS, gap_experiments, gap_variants  # noqa: F401
from .results import (RECORD_KEYS, classifier_record, curve_records, defense_records, json_safe,  # noqa: F401
                      file_fingerprint, model_record, record, round_records, transfer_records, uap_record,
                      control_records)
from . import rules, terms  # noqa: F401,E402
