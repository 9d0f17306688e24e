"""Items to batches: item tables, splits and folds (groups too), samples, the decode-once cache, loaders with augmentation."""
