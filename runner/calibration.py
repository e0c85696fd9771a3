"""Post-hoc calibration of a classifier's probabilities: temperature scaling, fitted on validation only.

Temperature scaling (Guo et al. 2017) divides the logits by one number T > 0 fitted to minimise the negative
log-likelihood of the validation labels, then applies the same T to test and external test. T > 1 softens an
overconfident model, T < 1 sharpens an underconfident one. Dividing every logit by the same positive T keeps
their order, so the arg-max class and the side of 0.5 of every score (and the ranking of images) are unchanged:
accuracy, F1, ROC AUC and the tuned threshold's results are the same before and after; only the calibration
figures (``ece``, ``brier``) change, which is why the trial reports those twice (``*_calibrated``) and nothing
else.

The models output probabilities (``runner.models``: a sigmoid or softmax ``output`` layer), so the logits are
recovered from them: logit(p) = log p - log(1 - p) for a sigmoid, log p for a softmax (logits up to a constant
per image, which softmax ignores). Probabilities are clipped to float32's resolution first
(``PROBABILITY_FLOOR``, ``PROBABILITY_CEILING``): a sigmoid that rounded to exactly 1.0 reads as logit 16.6, the
largest float32 can tell from 1, so only saturated outputs lose anything.

No TensorFlow here, and SciPy only when a fit or a scaling runs (``runner.config`` imports ``METHODS``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

Method = Literal["none", "temperature"]
METHODS: tuple[Method, ...] = ("none", "temperature")
#: The range the fitted temperature is searched in. Validation images the model separates perfectly would
#: push T towards 0 without end; the bound keeps such a fit finite (and visible: T at 0.05).
TEMPERATURE_RANGE = (0.05, 20.0)
PROBABILITY_FLOOR = float(np.finfo(np.float32).tiny)
PROBABILITY_CEILING = 1.0 - 2.0 ** -24  # the largest float32 below 1


def logits(probabilities: Any) -> np.ndarray:
    """Logits of (n,) sigmoid probabilities or of (n, k) softmax probabilities (up to a constant per row)."""
    p = np.clip(np.asarray(probabilities, dtype=float), PROBABILITY_FLOOR, PROBABILITY_CEILING)
    return np.log(p) - np.log1p(-p) if p.ndim == 1 else np.log(p)


def scaled(probabilities: Any, temperature: float) -> np.ndarray:
    """The probabilities with their logits divided by ``temperature``: sigmoid (n,) or softmax (n, k)."""
    from scipy.special import expit, softmax

    z = logits(probabilities) / temperature
    return expit(z) if z.ndim == 1 else softmax(z, axis=1)


def _negative_log_likelihood(z: np.ndarray, y: np.ndarray, inverse_temperature: float) -> float:
    from scipy.special import log_softmax

    scaled_logits = z * inverse_temperature
    if z.ndim == 1:  # -log sigmoid(z) for positives, -log(1 - sigmoid(z)) = -log sigmoid(-z) for negatives
        return float(np.logaddexp(0.0, np.where(y == 1, -scaled_logits, scaled_logits)).mean())
    return float(-log_softmax(scaled_logits, axis=1)[np.arange(len(y)), y].mean())


def fit_temperature(targets: Any, probabilities: Any) -> float:
    """The temperature minimising the mean negative log-likelihood of ``targets`` (0/1 with (n,)
    probabilities, class indices with (n, k)) under the scaled probabilities. Call it on VALIDATION
    predictions only: fitted on test, calibration after scaling would be measured on what it was fitted to.

    The likelihood is convex in 1/T, so a bounded scalar search over 1/T (``TEMPERATURE_RANGE``) finds the one
    minimum."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(targets).ravel().astype(int)
    z = logits(probabilities)
    if len(z) != len(y) or not len(y):
        raise ValueError(f"fit_temperature needs one target per prediction and at least one: got {len(y)} targets "
                         f"and {len(z)} predictions")
    low, high = TEMPERATURE_RANGE
    found = minimize_scalar(lambda beta: _negative_log_likelihood(z, y, beta), bounds=(1 / high, 1 / low),
                            method="bounded", options={"xatol": 1e-6})
    return float(1.0 / found.x)
