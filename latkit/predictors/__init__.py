"""Latency predictors: the MLP LPM, an XGBoost baseline and an additive per-op model."""
from latkit.predictors.base import Predictor, PredictorError, list_predictors, make_predictor
from latkit.predictors.fitting import DEFAULT_STAT, fit_dataset, load_predictor, metrics
import latkit.predictors.models  # noqa: F401  (registers the from-scratch kinds)
from latkit.predictors.transfer import TransferPredictor

__all__ = ["Predictor", "PredictorError", "DEFAULT_STAT", "fit_dataset", "load_predictor", "metrics",
           "list_predictors", "make_predictor", "TransferPredictor"]
