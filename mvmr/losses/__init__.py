"""Losses as plain functions and modules, with no training-loop knowledge: import them into any loop."""
from .clustering import mira_assign, mira_objective, sinkhorn_assign, swapped_cross_entropy
from .dcor import distance_correlation, safe_sqrt
from .views import ViewTerms, invariance_loss, variance_loss, weighted_total
from .distill import (RKD, SEED, ContrastiveKD, CosineRegression, DCorObjective, MSERegression,
                      SimilarityPreserving, SoftTargetKD, rkd_angle, rkd_distance)

__all__ = ["distance_correlation", "safe_sqrt", "invariance_loss", "variance_loss", "weighted_total", "ViewTerms",
           "mira_assign", "sinkhorn_assign", "swapped_cross_entropy", "mira_objective", "DCorObjective",
           "CosineRegression", "MSERegression", "RKD", "SimilarityPreserving", "SEED", "SoftTargetKD", "ContrastiveKD",
           "rkd_distance", "rkd_angle"]
