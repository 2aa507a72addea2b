"""Keras callbacks: eviction of rare ids and table-size reports during ``fit``."""

import tf_keras

from tf_freqsgd import arguments
from tf_freqsgd.dynamic import frequency


class FrequencyEviction(tf_keras.callbacks.Callback):
    """Evicts rare ids (see ``tf_freqsgd.dynamic.evict``) at the end of every epoch, or every
    ``every_n_steps`` training steps; the numbers evicted go into ``logs`` as ``evicted/<table>``."""

    def __init__(self, min_count=None, top_n=None, every_n_steps=None):
        super().__init__()
        self.min_count, self.top_n = frequency.eviction_arguments(min_count, top_n)
        self.every_n_steps = arguments.integer("every_n_steps", every_n_steps, minimum=1, allow_none=True)
        self.steps = 0

    def _evict(self, logs):
        evicted = frequency.evict(self.model.optimizer, self.min_count, self.top_n)
        if logs is not None:
            logs.update({f"evicted/{name}": count for name, count in evicted.items()})

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.every_n_steps and self.steps % self.every_n_steps == 0:
            self._evict(logs)

    def on_epoch_end(self, epoch, logs=None):
        if not self.every_n_steps:
            self._evict(logs)


class TableSizeLogger(tf_keras.callbacks.Callback):
    """Reports each dynamic table's rows and counted ids at the end of every epoch: in ``logs``
    (``rows/<table>``, ``counted/<table>``) and in ``history``, one dict per epoch."""

    def __init__(self):
        super().__init__()
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        sizes = frequency.table_sizes(self.model.optimizer)
        self.history.append(sizes)
        if logs is not None:
            for name, size in sizes.items():
                logs[f"rows/{name}"] = size["rows"]
                logs[f"counted/{name}"] = size["counted"]
