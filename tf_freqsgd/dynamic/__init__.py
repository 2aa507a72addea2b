"""TFRA dynamic embeddings (hash tables keyed by 64-bit ids) trained by tf_freqsgd's optimizers:
counters in width-1 hash tables, admission and eviction by frequency, table sizes."""

from tf_freqsgd.dynamic import saving
from tf_freqsgd.dynamic.callbacks import FrequencyEviction, TableSizeLogger
from tf_freqsgd.dynamic.frequency import evict, table_sizes
from tf_freqsgd.optimizers.row_storage import KeyedRows, gather_rows, is_dynamic

__all__ = ["FrequencyEviction", "KeyedRows", "TableSizeLogger", "evict", "gather_rows", "is_dynamic", "saving", "table_sizes"]
