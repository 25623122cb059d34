r"""losskit losses as Keras 3 losses: ``model.compile(loss=losskit.keras.Loss(lk.NAME))``.

Keras calls a loss as ``loss(y_true, y_pred, sample_weight)``, the reverse of losskit's
``(prediction, target)``, and converts ``y_true`` to the model's float dtype, so sparse
class labels arrive as floats (and often with a trailing axis of 1). :class:`Loss`
translates: it passes ``(y_pred, y_true)``, turns float labels back into integers for the
losses that take class labels (when ``y_true`` has one axis fewer than ``y_pred``, or a
trailing axis of 1 where ``y_pred`` has classes), and returns the per-example losses
(``reduction="none"``; an elementwise loss averaged over the last axis, as Keras's
built-in losses do) so that Keras applies its own ``sample_weight``, masking and reduction
(``"sum_over_batch_size"``, the default, is the mean).

On the jax and torch backends the gradient is losskit's closed form (:mod:`losskit.jax`,
:mod:`losskit.torch`). The loss is serialisable: ``get_config``/``from_config`` store the
loss by name with its options.

>>> import losskit as lk, losskit.keras
>>> loss = losskit.keras.Loss(lk.softmax_cross_entropy, label_smoothing=0.1)
>>> loss.get_config()["loss"], loss.get_config()["options"]
('softmax_cross_entropy', {'label_smoothing': 0.1})
"""

from __future__ import annotations

import keras

from .core.loss import Loss as _Loss

__all__ = ["Loss"]


def _find(name: str) -> _Loss:
    from .evaluate import find_loss

    return find_loss(name)


def _takes_labels(loss: _Loss) -> bool:
    """Whether the loss accepts integer class labels as its target."""
    return "integer" in (loss.target or "").lower() or _labels_only(loss)


def _labels_only(loss: _Loss) -> bool:
    """Whether the loss's target is integer class labels or indices and nothing else (no
    probabilities, soft masks or 0/1 labels as floats): Keras's float ``y_true`` is then
    always cast, whatever its shape (``multilabel_margin``'s padded indices have the
    prediction's shape)."""
    target = (loss.target or "").lower()
    return (("indices" in target or "class labels" in target)
            and not any(w in target for w in ("probabilit", "soft", "mask")))


@keras.saving.register_keras_serializable(package="losskit")
class Loss(keras.losses.Loss):
    """A losskit loss in Keras's ``(y_true, y_pred)`` convention.

    Parameters
    ----------
    loss : losskit loss or str
        The loss (``lk.softmax_cross_entropy``) or its name.
    name, reduction, dtype
        As for ``keras.losses.Loss`` (``reduction`` is Keras's: ``"sum_over_batch_size"``,
        ``"sum"``, ``"mean"``, ``"none"``...).
    sparse : bool or None, default None
        Whether ``y_true`` holds class labels (cast to integers). None: decided from the
        shapes (one axis fewer than ``y_pred``, or a trailing axis of 1) for the losses
        that take labels.
    **options
        The loss's options (``label_smoothing=0.1``, ``delta=0.5``...).
    """

    def __init__(self, loss, *, name=None, reduction="sum_over_batch_size", dtype=None,
                 sparse=None, **options):
        if isinstance(loss, str):
            loss = _find(loss)
        if not isinstance(loss, _Loss):
            raise TypeError(f"`loss` must be a losskit loss (such as lk.mse) or its name; got "
                            f"{type(loss).__name__}")
        unknown = set(options) - set(loss.option_defaults())
        if unknown:
            raise TypeError(loss._unknown_message(unknown))
        if sparse not in (None, True, False):
            raise TypeError(f"`sparse` must be True, False or None; got {sparse!r}")
        super().__init__(name=name or loss.name, reduction=reduction, dtype=dtype)
        self.loss = loss
        self.sparse = sparse
        self.options = dict(options)

    def _labels(self, y_true, y_pred):
        sparse = self.sparse
        ops = keras.ops
        if sparse is None:
            if not _takes_labels(self.loss):
                return y_true
            nd_t, nd_p = len(y_true.shape), len(y_pred.shape)
            if _labels_only(self.loss):
                sparse = True
            elif nd_t == nd_p - 1:
                sparse = True
            elif nd_t == nd_p and y_true.shape[-1] == 1 and y_pred.shape[-1] not in (None, 1):
                sparse = True
            else:
                sparse = False
        if not sparse:
            return y_true
        if (len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1
                and y_pred.shape[-1] not in (None, 1)):
            y_true = ops.squeeze(y_true, axis=-1)
        return ops.cast(y_true, "int32")

    def call(self, y_true, y_pred):
        y_true = self._labels(y_true, y_pred)
        values = self.loss(y_pred, y_true, reduction="none", **self.options)
        if len(values.shape) == len(y_pred.shape) and len(values.shape) > 1:
            # elementwise losses: per-sample values are the mean over the last axis, as
            # Keras's MeanSquaredError, Huber, BinaryCrossentropy... (sample weights apply)
            values = keras.ops.mean(values, axis=-1)
        return values

    def get_config(self):
        config = super().get_config()
        config.update({"loss": self.loss.name, "sparse": self.sparse,
                       "options": dict(self.options)})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        loss = config.pop("loss")
        options = config.pop("options", {}) or {}
        return cls(loss, **config, **options)
