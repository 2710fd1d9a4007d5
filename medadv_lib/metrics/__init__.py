"""Metrics: classification quality and robustness under attack."""
from .classification import classification_report, confusion_matrix, report_table
from .robustness import (attack_success_rate, defense_rate, median_rho_adv, most_fragile, predict, rho_adv,
                         robust_accuracy, robustness_curve)
from .universal import (PAPER_TEST_MIX, evaluate_uap, fooling_rate, reweighted_interval, reweighted_rate,
                        target_success_rate,
                        uap_metrics_from_predictions)
