"""Select stage: semi-supervised multi-label feature selection (SGMFS) and its baselines (issue 9).

- :mod:`~rayapp.select.data`: ARFF / CSV multi-label readers, the semi-supervised split;
- :mod:`~rayapp.select.sgmfs`: SGMFS (objective, updates and convergence in its docstring);
- :mod:`~rayapp.select.tune`: SGMFSCV, its hyperparameters by cross-validation on the labelled rows;
- :mod:`~rayapp.select.selectors`: every selector behind one interface, by name (``SELECTORS``);
- :mod:`~rayapp.select.mlknn`, :mod:`~rayapp.select.metrics`: ML-kNN and the multi-label metrics;
- :mod:`~rayapp.select.bench`: the Ray sweep (one task per configuration);
- :mod:`~rayapp.select.label`: tagging corpus documents from a few labelled ones.
"""

from rayapp.select.data import MultiLabelData, MultiLabelDataError, read_arff, read_multilabel_csv, semi_supervised_split
from rayapp.select.metrics import multilabel_report
from rayapp.select.mlknn import MLkNN
from rayapp.select.selectors import SELECTORS, register_selector, select_scores, top_features
from rayapp.select.sgmfs import SGMFS
from rayapp.select.tune import SGMFSCV

__all__ = ["MultiLabelData", "MultiLabelDataError", "read_arff", "read_multilabel_csv", "semi_supervised_split",
           "multilabel_report", "MLkNN", "SELECTORS", "register_selector", "select_scores", "top_features", "SGMFS", "SGMFSCV"]
