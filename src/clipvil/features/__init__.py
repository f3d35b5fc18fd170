"""clipvil.features: the HDF5 feature store (parts, index, provenance) that extraction writes and tasks read."""

from clipvil.features.store import FeatureStore, GridBatch, open_for_writing, write_part

__all__ = ["FeatureStore", "GridBatch", "open_for_writing", "write_part"]
