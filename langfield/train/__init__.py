"""langfield.train: the offline reconstruction loop, its config, losses and checkpoints."""

from langfield.train.config import LearningRates, TrainConfig
from langfield.train.reconstruct import ReconstructResult, reconstruct
from langfield.train.trainer import Trainer

__all__ = ["LearningRates", "TrainConfig", "Trainer", "ReconstructResult", "reconstruct"]
